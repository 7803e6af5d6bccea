package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/audit"
	"github.com/txorder/txorder/internal/testenv"
)

// freePorts returns n ports free on 127.0.0.1 right now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// stackPorts returns free ports for devstack's MySQL, Redis, NameServer,
// broker, orderd and fulfillmentd such that the second broker (+10) and
// the second orderd and fulfillmentd replicas (+2) are free too.
func stackPorts(t *testing.T) []int {
	t.Helper()
	free := func(port int) bool {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return false
		}
		ln.Close()
		return true
	}
	for range 50 {
		p := freePorts(t, 6)
		if p[3]+10 < 65536 && p[4]+2 < 65536 && p[5]+2 < 65536 && p[4]+2 != p[5] &&
			free(p[3]+10) && free(p[4]+2) && free(p[5]+2) {
			return p
		}
	}
	t.Fatal("no free port set for the stack and its replicas")
	return nil
}

// cleanEnviron is this process's environment without any TXORDER_
// variable (and RUN_DIR): what a shell on a fresh clone has.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, configs.EnvPrefix) || strings.HasPrefix(kv, "RUN_DIR=") || strings.HasPrefix(kv, "TXO_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// TestLocalStackToolsNeedNoEnvironment: on a fresh clone (a directory with
// scripts/, configs/ and the built bin/), `scripts/devstack.sh start` (what
// `make run` runs) brings the stack up, and then `bin/ordertool pay`,
// `audit`, `dlq list` and `spill list`, run from the repository root with
// no TXORDER_ variable at all, reach its MySQL, Redis and orderd: they read
// the configuration devstack wrote to .run/, whose secrets are in 0600
// files and not in the YAML. Redis runs with maxmemory and noeviction.
// The stack runs two orderd and two fulfillmentd replicas and two broker
// groups: each replica serves on its own port, one can be killed and
// started by name, and a stop without the replica variables still stops
// them all.
func TestLocalStackToolsNeedNoEnvironment(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{"scripts", "configs", "bin"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "../../scripts/devstack.sh", filepath.Join(root, "scripts", "devstack.sh"), 0o755)
	for _, f := range []string{"orderd.yaml", "fulfillmentd.yaml"} {
		copyFile(t, filepath.Join("../../configs", f), filepath.Join(root, "configs", f), 0o644)
	}
	for _, name := range []string{"orderd", "fulfillmentd", "rmqdev", "ordertool"} {
		if err := os.Symlink(binary(t, name), filepath.Join(root, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	ports := stackPorts(t)
	stackEnv := append(cleanEnviron(), "TXO_ORDERD_REPLICAS=2", "TXO_FULFILLMENTD_REPLICAS=2",
		"TXO_MYSQL_PORT="+strconv.Itoa(ports[0]), "TXO_REDIS_PORT="+strconv.Itoa(ports[1]),
		"TXO_NAMESRV_PORT="+strconv.Itoa(ports[2]), "TXO_BROKER_PORT="+strconv.Itoa(ports[3]),
		"TXO_ORDERD_PORT="+strconv.Itoa(ports[4]), "TXO_FULFILLMENTD_PORT="+strconv.Itoa(ports[5]),
		"TXO_WAIT_SECONDS=180", "TXO_STOP_SECONDS=20")
	devstackEnv := func(env []string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "devstack.sh"), args...)
		cmd.Dir, cmd.Env = root, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	devstack := func(args ...string) (string, error) { return devstackEnv(stackEnv, args...) }
	t.Cleanup(func() {
		if out, err := devstack("stop"); err != nil {
			t.Errorf("devstack stop: %v\n%s", err, out)
		}
	})
	if out, err := devstack("start"); err != nil {
		t.Fatalf("devstack start: %v\n%s", err, out)
	}

	// The configuration is in .run/, the secrets beside it, not in it.
	for _, f := range []string{"mysql-password", "api-keys", "webhook-secret"} {
		fi, err := os.Stat(filepath.Join(root, ".run", "secrets", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf(".run/secrets/%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	for _, f := range []string{"orderd.yaml", "fulfillmentd.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, ".run", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), configs.DevAPIKey) || strings.Contains(string(b), "dev-webhook-secret") {
			t.Errorf(".run/%s holds a secret:\n%s", f, b)
		}
	}

	tool := func(args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "ordertool"), args...)
		cmd.Dir, cmd.Env = root, cleanEnviron()
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
	}

	orderd := "http://127.0.0.1:" + strconv.Itoa(ports[4])
	id := placeDevOrder(t, orderd)
	if code, out, errOut := tool("pay", id); code != 0 || !strings.Contains(out, `"order_status":"PAID"`) {
		t.Fatalf("ordertool pay = %d %s %s", code, out, errOut)
	}
	code, out, errOut := tool("audit", "--settle", "60s", "--json")
	var r audit.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || !r.OK || r.Paid != 1 || r.Applied != 1 {
		t.Fatalf("ordertool audit = %d %+v (%v)\n%s%s", code, r, err, out, errOut)
	}
	if code, out, errOut := tool("dlq", "list"); code != 0 {
		t.Errorf("ordertool dlq list = %d %s %s", code, out, errOut)
	}
	if code, out, errOut := tool("spill", "list"); code != 0 || !strings.Contains(out, "pending") {
		t.Errorf("ordertool spill list = %d %s %s", code, out, errOut)
	}

	// Redis has a memory limit, and refuses rather than evicts.
	res, err := http.Get(orderd + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"txorder_redis_memory_max_bytes 2.68435456e+08", `txorder_redis_maxmemory_policy{policy="noeviction"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("orderd /metrics lacks %s", want)
		}
	}

	checkReplicas(t, ports, stackEnv, devstack, devstackEnv)
}

// checkReplicas: the second orderd and fulfillmentd serve on their base
// port + 2, devstack names and lists them, kills and restarts orderd-2 by
// name, and a stop run without the replica variables stops the replicas
// too (it finds them by their pid files).
func checkReplicas(t *testing.T, ports []int, stackEnv []string, devstack func(...string) (string, error),
	devstackEnv func([]string, ...string) (string, error)) {
	t.Helper()
	orderd2 := "http://127.0.0.1:" + strconv.Itoa(ports[4]+2)
	if out, err := devstack("urls"); err != nil || strings.TrimSpace(out) != "http://127.0.0.1:"+strconv.Itoa(ports[4])+","+orderd2 {
		t.Fatalf("devstack urls = %q (%v)", out, err)
	}
	if out, err := devstack("names", "fulfillmentd"); err != nil || strings.Fields(out)[1] != "fulfillmentd-2" {
		t.Fatalf("devstack names fulfillmentd = %q (%v)", out, err)
	}
	for _, url := range []string{orderd2 + "/readyz", "http://127.0.0.1:" + strconv.Itoa(ports[5]+2) + "/readyz"} {
		if res, err := http.Get(url); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v", url, err)
		} else {
			res.Body.Close()
		}
	}
	placeDevOrderKey(t, orderd2, "devstack-2")
	if out, err := devstack("kill", "orderd-2"); err != nil || !strings.Contains(out, "orderd-2: killed") {
		t.Fatalf("devstack kill orderd-2 = %q (%v)", out, err)
	}
	if _, err := devstack("status"); err == nil {
		t.Fatal("devstack status = 0 with orderd-2 killed, want 3")
	}
	if out, err := devstack("start-one", "orderd-2"); err != nil {
		t.Fatalf("devstack start-one orderd-2: %v\n%s", err, out)
	}
	if out, err := devstack("status"); err != nil {
		t.Fatalf("devstack status after the restart: %v\n%s", err, out)
	}
	// A stop run with one replica configured (the variables forgotten)
	// finds the second ones by their pid files and stops them too.
	var oneReplica []string
	for _, kv := range stackEnv {
		if !strings.HasPrefix(kv, "TXO_ORDERD_REPLICAS=") && !strings.HasPrefix(kv, "TXO_FULFILLMENTD_REPLICAS=") {
			oneReplica = append(oneReplica, kv)
		}
	}
	out, err := devstackEnv(oneReplica, "stop")
	if err != nil || !strings.Contains(out, "orderd-2: stopped") || !strings.Contains(out, "fulfillmentd-2: stopped") {
		t.Fatalf("stop without the replica variables = %q (%v), want the replicas stopped too", out, err)
	}
	if _, err := http.Get(orderd2 + "/healthz"); err == nil {
		t.Fatal("orderd-2 still answers after the stop")
	}
}

func placeDevOrder(t *testing.T, orderd string) string {
	return placeDevOrderKey(t, orderd, "devstack-1")
}

func placeDevOrderKey(t *testing.T, orderd, key string) string {
	return testenv.PlaceOrder(t, orderd, configs.DevAPIKey, key)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}
