package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/txorder/txorder/configs"
)

// TestScalableServices: `docker compose up --scale orderd=3 --scale
// fulfillmentd=2` works: no service has a fixed container name, the
// replicated ones publish no host port (the api load balancer publishes
// the API), and each replica's RocketMQ instance name carries its
// container's host name (configs.HostnamePlaceholder).
func TestScalableServices(t *testing.T) {
	p := project(t)
	for _, s := range p.Services {
		if s.ContainerName != "" {
			t.Errorf("service %s has container_name %q: it could not be scaled", s.Name, s.ContainerName)
		}
	}
	for name, key := range map[string]string{
		"orderd":       "TXORDER_ROCKETMQ__INSTANCE_NAME",
		"fulfillmentd": "TXORDER_FULFILLMENT__ROCKETMQ__INSTANCE_NAME",
	} {
		s := service(t, p, name)
		if len(s.Ports) != 0 {
			t.Errorf("service %s publishes %v: a second replica could not bind it", name, s.Ports)
		}
		if v := envOf(t, s)[key]; !strings.Contains(v, configs.HostnamePlaceholder) {
			t.Errorf("service %s: %s = %q, want it to contain %s so that replicas differ", name, key, v, configs.HostnamePlaceholder)
		}
	}
	orderd, err := configs.LoadOrderd("", environ(envOf(t, service(t, p, "orderd"))))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !strings.HasSuffix(orderd.RocketMQ.InstanceName, host) {
		t.Errorf("orderd's instance name %q does not end in the host name %q", orderd.RocketMQ.InstanceName, host)
	}
}

// haproxyCfg is deploy/haproxy.cfg, parsed just enough for the checks.
type haproxyCfg struct {
	text                  string
	templateTarget        string // host:port of server-template
	check                 string // option httpchk
	inter                 time.Duration
	fall                  int
	bind                  string
	usesResolvers, initNo bool
}

func readHAProxy(t *testing.T) haproxyCfg {
	t.Helper()
	b, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	c := haproxyCfg{text: string(b)}
	for _, line := range strings.Split(c.text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case f[0] == "server-template" && len(f) >= 4:
			c.templateTarget = f[3]
		case f[0] == "option" && len(f) >= 4 && f[1] == "httpchk":
			c.check = f[2] + " " + f[3]
		case f[0] == "bind" && len(f) >= 2:
			c.bind = f[1]
		case f[0] == "default-server":
			for i := 1; i+1 < len(f); i++ {
				switch f[i] {
				case "inter":
					c.inter, _ = time.ParseDuration(f[i+1])
				case "fall":
					fmt.Sscan(f[i+1], &c.fall)
				case "resolvers":
					c.usesResolvers = true
				case "init-addr":
					c.initNo = f[i+1] == "none"
				}
			}
		}
	}
	return c
}

// TestLoadBalancerConfig: the api service runs deploy/haproxy.cfg, which
// sends to every orderd replica on orderd's port, checks /readyz, and takes
// a stopping replica out well within orderd's drain delay; haproxy itself
// accepts the file (`haproxy -c`).
func TestLoadBalancerConfig(t *testing.T) {
	p := project(t)
	api := service(t, p, "api")
	mounted := false
	for _, v := range api.Volumes {
		if v.Source == filepath.Join(p.WorkingDir, "deploy", "haproxy.cfg") && v.Target == "/usr/local/etc/haproxy/haproxy.cfg" && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("api does not mount deploy/haproxy.cfg read-only where the image reads it: %v", api.Volumes)
	}
	if api.DependsOn["orderd"].Condition != types.ServiceConditionHealthy {
		t.Error("api does not wait for orderd to be healthy")
	}
	cfg, err := configs.LoadOrderd("", environ(envOf(t, service(t, p, "orderd"))))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(cfg.HTTP.Addr)
	h := readHAProxy(t)
	if h.templateTarget != "orderd:"+port {
		t.Errorf("haproxy sends to %q, orderd listens on port %s", h.templateTarget, port)
	}
	if h.check != "GET /readyz" {
		t.Errorf("haproxy checks %q, want GET /readyz (readiness goes down first on shutdown)", h.check)
	}
	if !h.usesResolvers || !h.initNo {
		t.Error("haproxy's servers must resolve through Docker's DNS (resolvers) and start without an address (init-addr none)")
	}
	if out := time.Duration(h.fall) * h.inter; out <= 0 || out >= cfg.HTTP.DrainDelay {
		t.Errorf("haproxy takes a replica out after %d × %s = %s; it must be shorter than orderd's drain delay %s",
			h.fall, h.inter, out, cfg.HTTP.DrainDelay)
	}
	if _, pub, _ := strings.Cut(h.bind, ":"); pub != fmt.Sprint(api.Ports[0].Target) {
		t.Errorf("haproxy binds %q, the api service publishes container port %d", h.bind, api.Ports[0].Target)
	}
	out, err := exec.Command(haproxyBin(t), "-c", "-f", "haproxy.cfg").CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

func haproxyBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("haproxy not found: install it with: apt-get install -y haproxy (or scripts/install-deps.sh)")
	return ""
}

// fakeOrderd is a replica behind the load balancer: it answers /readyz
// (503 once draining) and placements, each after a short wait so that
// some are in flight when it is killed.
type fakeOrderd struct {
	srv      *httptest.Server
	draining atomic.Bool
	served   atomic.Int64
}

func newFakeOrderd(t *testing.T) *fakeOrderd {
	f := &fakeOrderd{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if f.draining.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond)
		f.served.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// kill closes the listener and cuts every connection, requests in flight
// included, as a process killed -9 does.
func (f *fakeOrderd) kill() {
	f.srv.Listener.Close()
	f.srv.CloseClientConnections()
}

// TestLoadBalancerDrainsAndFailsOver runs deploy/haproxy.cfg itself, with
// its server-template replaced by three local replicas (Docker's DNS is
// not here) and its bind by a local port, under a steady stream of
// placements. One replica drains as orderd does on SIGTERM (/readyz 503,
// serving on for the drain delay, then gone); another is killed with
// requests in flight. No client request fails, and the drained replica
// gets nothing once haproxy has seen it not ready.
func TestLoadBalancerDrainsAndFailsOver(t *testing.T) {
	bin := haproxyBin(t)
	reps := []*fakeOrderd{newFakeOrderd(t), newFakeOrderd(t), newFakeOrderd(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := ln.Addr().String()
	ln.Close()
	h := readHAProxy(t)
	var servers []string
	for i, r := range reps {
		servers = append(servers, fmt.Sprintf("  server orderd%d %s check", i+1, r.srv.Listener.Addr()))
	}
	local := regexp.MustCompile(`(?m)^\s*server-template .*$`).ReplaceAllString(h.text, strings.Join(servers, "\n"))
	local = regexp.MustCompile(`(?m)^(\s*default-server .*?) resolvers docker init-addr none`).ReplaceAllString(local, "$1")
	local = regexp.MustCompile(`(?m)^(\s*bind) \S+`).ReplaceAllString(local, "$1 "+front)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var logLines []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logLines = append(logLines, sc.Text())
			logMu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	client := &http.Client{Timeout: 5 * time.Second}
	post := func() (int, string, error) {
		res, err := client.Post("http://"+front+"/v1/orders", "application/json", strings.NewReader(`{}`))
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		return res.StatusCode, res.Header.Get("X-Served-By"), nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, err := post(); err == nil && code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			logMu.Lock()
			t.Fatalf("haproxy does not serve on %s:\n%s", front, strings.Join(logLines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var failures, total atomic.Int64
	var servedBy sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, by, err := post()
				total.Add(1)
				if err != nil || code != http.StatusCreated {
					failures.Add(1)
					t.Logf("request failed: %d %v", code, err)
					continue
				}
				servedBy.Store(by, true)
			}
		}()
	}
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("requests on every replica", func() bool {
		return reps[0].served.Load() > 20 && reps[1].served.Load() > 20 && reps[2].served.Load() > 20
	})

	// Replica 2 drains: readiness down, serving on for the drain delay
	// (5 s in compose; 3 s here, still longer than inter × fall), then gone.
	reps[1].draining.Store(true)
	drainStart := time.Now()
	time.Sleep(h.inter*time.Duration(h.fall) + time.Second)
	servedWhileOut := reps[1].served.Load()
	time.Sleep(3*time.Second - time.Since(drainStart))
	reps[1].kill()
	if extra := reps[1].served.Load() - servedWhileOut; extra != 0 {
		t.Errorf("the draining replica got %d requests after haproxy had time to see it not ready", extra)
	}
	// Replica 3 is killed -9 with requests in flight: haproxy resends them.
	reps[2].kill()
	before := reps[0].served.Load()
	waitUntil("requests going on at the one replica left", func() bool { return reps[0].served.Load() > before+100 })
	cancel()
	wg.Wait()
	n := 0
	servedBy.Range(func(any, any) bool { n++; return true })
	t.Logf("%d requests through haproxy, %d failed; answers named %d servers", total.Load(), failures.Load(), n)
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed through a drain and a kill", failures.Load(), total.Load())
	}
	if n != 3 {
		t.Errorf("X-Served-By named %d servers, want 3", n)
	}
}
