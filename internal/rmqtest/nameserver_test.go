package rmqtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

func getClusterInfo(t *testing.T, nsAddr string) remoting.ClusterInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ci, err := remoting.GetClusterInfo(ctx, nsAddr)
	if err != nil {
		t.Fatalf("GET_BROKER_CLUSTER_INFO: %v", err)
	}
	return ci
}

// TestSeparateNameServerAndBroker runs the two halves as separate servers,
// the way cmd/rmqdev's subcommands do: the broker registers over the wire
// with REGISTER_BROKER.
func TestSeparateNameServerAndBroker(t *testing.T) {
	const topic = "split-process"
	ns := rmqtest.RunT(t, rmqtest.Options{NoBroker: true})
	br := rmqtest.RunT(t, rmqtest.Options{
		NoNameServer:     true,
		RegisterTo:       []string{ns.NameServerAddr()},
		RegisterInterval: 50 * time.Millisecond,
		Topics:           map[string]int{topic: 4},
	})
	if ns.BrokerAddr() != "" || br.NameServerAddr() != "" {
		t.Fatalf("addresses of disabled halves: %q %q", ns.BrokerAddr(), br.NameServerAddr())
	}
	ci := getClusterInfo(t, ns.NameServerAddr())
	if got := ci.BrokerAddrTable["broker-a"].BrokerAddrs[0]; got != br.BrokerAddr() {
		t.Fatalf("cluster info broker address %q, want %q (%+v)", got, br.BrokerAddr(), ci)
	}
	if got := ci.ClusterAddrTable["DefaultCluster"]; len(got) != 1 || got[0] != "broker-a" {
		t.Errorf("cluster table %v, want [broker-a]", got)
	}

	p := startProducer(t, ns)
	var got received
	startConsumer(t, ns, uniq(t, "cg"), topic, recordInto(&got))
	ctx := context.Background()
	if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte("one"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, 5*time.Second, "consumed", func() bool { return got.count("one") == 1 })

	// A restarted NameServer is empty until the broker's next registration.
	ns.StopNameServer()
	if err := ns.StartNameServer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "broker re-registered over the wire", func() bool {
		return len(getClusterInfo(t, ns.NameServerAddr()).BrokerAddrTable) == 1
	})
	p2 := startProducer(t, ns)
	if _, err := p2.SendSync(ctx, primitive.NewMessage(topic, []byte("two"))); err != nil {
		t.Fatalf("send after the name server restart: %v", err)
	}

	// A stopped broker's registration connection closes: its routes go.
	br.StopBroker()
	eventually(t, 5*time.Second, "routes of the stopped broker removed", func() bool {
		return len(getClusterInfo(t, ns.NameServerAddr()).BrokerAddrTable) == 0
	})
	if err := br.StartBroker(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "restarted broker registered", func() bool {
		return len(getClusterInfo(t, ns.NameServerAddr()).BrokerAddrTable) == 1
	})
}
