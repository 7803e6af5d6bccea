package main

import (
	"bufio"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

func TestClusterFromRmqtest(t *testing.T) {
	srv := rmqtest.RunT(t, rmqtest.Options{ClusterName: "txorder-cluster", BrokerName: "txorder-broker-a"})
	code, out, errOut := runTool(t, nil, "cluster", "--namesrv", srv.NameServerAddr())
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"NameServer " + srv.NameServerAddr(), "CLUSTER", "txorder-cluster", "txorder-broker-a", srv.BrokerAddr(), "master"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runTool(t, nil, "cluster", "--namesrv", srv.NameServerAddr(), "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d, stderr %q", code, errOut)
	}
	var report clusterReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if len(report.Clusters) != 1 || len(report.Clusters[0].Brokers) != 1 {
		t.Fatalf("report %+v, want one cluster with one broker", report)
	}
	b := report.Clusters[0].Brokers[0]
	if report.NameServer != srv.NameServerAddr() || report.Clusters[0].Name != "txorder-cluster" ||
		b.Name != "txorder-broker-a" || b.Master != srv.BrokerAddr() ||
		len(b.Nodes) != 1 || b.Nodes[0] != (brokerNode{ID: 0, Addr: srv.BrokerAddr(), Role: "master"}) {
		t.Errorf("report %+v, want broker txorder-broker-a with master %s", report, srv.BrokerAddr())
	}

	code, out, _ = runTool(t, nil, "cluster", "--namesrv", srv.NameServerAddr(), "--master")
	if code != 0 || out != srv.BrokerAddr()+"\n" {
		t.Errorf("--master: exit %d, output %q, want %q", code, out, srv.BrokerAddr()+"\n")
	}
}

// deadAddr returns a 127.0.0.1 address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestClusterTriesEachNameServer(t *testing.T) {
	srv := rmqtest.RunT(t, rmqtest.Options{})
	dead := deadAddr(t)
	for _, list := range []string{dead + "," + srv.NameServerAddr(), dead + ";" + srv.NameServerAddr()} {
		code, out, errOut := runTool(t, nil, "cluster", "--namesrv", list)
		if code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", list, code, errOut)
		}
		if !strings.Contains(out, "NameServer "+srv.NameServerAddr()) || !strings.Contains(out, srv.BrokerAddr()) {
			t.Errorf("%s: output does not come from the live NameServer:\n%s", list, out)
		}
	}
}

// TestClusterNameServerByName: a NameServer given by name (as compose
// gives namesrv-1:9876) is resolved; one whose name does not resolve is
// named in the error and the next one is asked.
func TestClusterNameServerByName(t *testing.T) {
	srv := rmqtest.RunT(t, rmqtest.Options{})
	_, port, _ := net.SplitHostPort(srv.NameServerAddr())
	byName := "localhost:" + port
	code, out, errOut := runTool(t, nil, "cluster", "--namesrv", "no-such-namesrv.invalid:9876,"+byName)
	if code != 0 || !strings.Contains(out, "NameServer "+byName) || !strings.Contains(out, srv.BrokerAddr()) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the answer of %s", code, out, errOut, byName)
	}
	code, _, errOut = runTool(t, nil, "cluster", "--namesrv", "no-such-namesrv.invalid:9876", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "name server no-such-namesrv.invalid:9876 does not resolve") {
		t.Errorf("unresolvable only: exit %d, stderr %q; want 1 and the name", code, errOut)
	}
}

func TestClusterNameServersFromEnvironment(t *testing.T) {
	srv := rmqtest.RunT(t, rmqtest.Options{})
	env := []string{"TXORDER_ROCKETMQ__NAME_SERVERS=" + deadAddr(t) + "," + srv.NameServerAddr()}
	code, out, errOut := runTool(t, env, "cluster")
	if code != 0 || !strings.Contains(out, srv.BrokerAddr()) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestClusterNoNameServerAnswers(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	code, out, errOut := runTool(t, nil, "cluster", "--namesrv", a+","+b, "--timeout", "2s")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stdout %q)", code, out)
	}
	for _, want := range []string{"no NameServer answered", a, b} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %q", want, errOut)
		}
	}
}

func TestClusterUsage(t *testing.T) {
	for _, args := range [][]string{
		{"cluster", "--namesrv", "nohost"},
		{"cluster", "--namesrv", "host:99999"},
		{"cluster", "--namesrv", ",;"},
		{"cluster", "extra"},
		{"cluster", "--bogus"},
	} {
		if code, _, errOut := runTool(t, nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errOut)
		}
	}
	if code, _, errOut := runTool(t, nil, "cluster", "--help"); code != 0 || !strings.Contains(errOut, "--namesrv") {
		t.Errorf("--help: exit %d, stderr %q", code, errOut)
	}
}

// fakeNameServer answers every GET_BROKER_CLUSTER_INFO with body, the way a
// Java NameServer writes it.
func fakeNameServer(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			r := bufio.NewReader(conn)
			for {
				req, err := remoting.ReadCommand(r, 0)
				if err != nil {
					break
				}
				resp := remoting.NewResponse(req, remoting.RequestCodeNotSupported, "unsupported")
				if req.Code == remoting.GetBrokerClusterInfo {
					resp = remoting.NewResponse(req, remoting.Success, "")
					resp.Body = []byte(body)
				}
				if _, err := conn.Write(remoting.Encode(resp)); err != nil {
					break
				}
			}
			conn.Close()
		}
	}()
	return ln.Addr().String()
}

// A DLedger group as a Java NameServer reports it after n1 won the
// election: the leader as id 0, the followers n0 and n2 as ids 1 and 3
// (fastjson writes the integer keys unquoted).
const dledgerClusterInfo = `{"brokerAddrTable":{"txorder-broker-a":{"brokerAddrs":{3:"broker-n2:30931",0:"broker-n1:30921",1:"broker-n0:30911"},` +
	`"brokerName":"txorder-broker-a","cluster":"txorder-cluster"}},"clusterAddrTable":{"txorder-cluster":["txorder-broker-a"]}}`

func TestClusterDLedgerGroup(t *testing.T) {
	ns := fakeNameServer(t, dledgerClusterInfo)
	code, out, errOut := runTool(t, nil, "cluster", "--namesrv", ns, "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var report clusterReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	b := report.Clusters[0].Brokers[0]
	want := []brokerNode{{0, "broker-n1:30921", "master"}, {1, "broker-n0:30911", "slave"}, {3, "broker-n2:30931", "slave"}}
	if b.Master != "broker-n1:30921" || len(b.Nodes) != len(want) {
		t.Fatalf("broker %+v, want master broker-n1:30921 and nodes %v", b, want)
	}
	for i := range want {
		if b.Nodes[i] != want[i] {
			t.Errorf("node %d = %+v, want %+v", i, b.Nodes[i], want[i])
		}
	}

	code, out, _ = runTool(t, nil, "cluster", "--namesrv", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 || !strings.Contains(lines[2], "broker-n1:30921") || !strings.HasSuffix(lines[2], "master") {
		t.Errorf("text output (exit %d), want the master first:\n%s", code, out)
	}
}

func TestClusterDuringElection(t *testing.T) {
	// The leader was killed: only the followers are registered, no id 0.
	ns := fakeNameServer(t, `{"brokerAddrTable":{"txorder-broker-a":{"brokerAddrs":{1:"broker-n0:30911",3:"broker-n2:30931"},`+
		`"brokerName":"txorder-broker-a","cluster":"txorder-cluster"}},"clusterAddrTable":{"txorder-cluster":["txorder-broker-a"]}}`)
	code, out, _ := runTool(t, nil, "cluster", "--namesrv", ns)
	if code != 0 || !strings.Contains(out, "txorder-broker-a has no master") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	code, out, errOut := runTool(t, nil, "cluster", "--namesrv", ns, "--master")
	if code != 1 || out != "" || !strings.Contains(errOut, "no master for txorder-broker-a") {
		t.Errorf("--master: exit %d, stdout %q, stderr %q; want 1 and no master", code, out, errOut)
	}
}

func TestClusterNoBrokers(t *testing.T) {
	ns := fakeNameServer(t, `{"brokerAddrTable":{},"clusterAddrTable":{}}`)
	code, out, _ := runTool(t, nil, "cluster", "--namesrv", ns)
	if code != 0 || !strings.Contains(out, "no brokers registered") {
		t.Errorf("exit %d, output %q", code, out)
	}
	if code, _, errOut := runTool(t, nil, "cluster", "--namesrv", ns, "--master"); code != 1 || !strings.Contains(errOut, "knows no brokers") {
		t.Errorf("--master: exit %d, stderr %q", code, errOut)
	}
}
