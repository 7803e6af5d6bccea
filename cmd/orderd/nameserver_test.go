package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/testenv"
)

// readyz is orderd's readiness answer.
type readyz struct {
	code   int
	Status string
	Checks map[string]struct{ Status, Error string }
}

// getReadyz asks as an operator does, with the admin key: the errors of
// the checks are shown only then (TestHostileInput checks the rest).
func getReadyz(t testing.TB, addr string) readyz {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := readyz{code: res.StatusCode}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNameServerByName: orderd configured with a NameServer host name (as
// compose configures namesrv-1:9876) starts, places an order through the
// transactional producer, takes its payment and the check-back commits
// the event. rocketmq-client-go alone refuses the name ("IP addr error").
func TestNameServerByName(t *testing.T) {
	s := newStack(t, stackOptions{})
	_, port, _ := net.SplitHostPort(s.mq.NameServerAddr())
	s.cfg.RocketMQ.NameServers = []string{"localhost:" + port}
	m := s.orderd()
	p := place(t, m.Addr(), "by-name")
	if p.code != http.StatusCreated {
		t.Fatalf("place with NameServer localhost:%s = %+v, want 201", port, p)
	}
	if r := getReadyz(t, m.Addr()); r.Checks["rocketmq"].Status != "up" {
		t.Errorf("readyz rocketmq = %+v, want up", r.Checks["rocketmq"])
	}
	if !s.pay(m.Addr(), p.id) {
		t.Fatal("payment lost its compare-and-set")
	}
	waitFor(t, 15*time.Second, "the check-back to commit the paid order's event", func() bool {
		return s.published()[p.id] == 1
	})
}

// switchable is a name table for Main.lookupHost: a name resolves only
// once the test says so.
type switchable struct {
	mu    sync.Mutex
	hosts map[string]string
}

func (h *switchable) set(name, ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hosts[name] = ip
}

func (h *switchable) lookup(_ context.Context, host string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ip, ok := h.hosts[host]; ok {
		return []string{ip}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestNameServerResolvesLater: orderd starts while its NameServer's name
// does not resolve (in compose: the namesrv containers are not running, so
// Docker's DNS does not know them). Meanwhile readiness reports rocketmq
// down naming the NameServer, orderd stays ready (Redis takes the orders)
// and placements are queued (202 QUEUED). Once the name resolves,
// readiness recovers, the clients pick the address up at their next
// refresh and the queued order is placed, paid and announced.
func TestNameServerResolvesLater(t *testing.T) {
	s := newStack(t, stackOptions{})
	_, port, _ := net.SplitHostPort(s.mq.NameServerAddr())
	name := "namesrv-1.txorder.test"
	s.cfg.RocketMQ.NameServers = []string{name + ":" + port}
	dns := &switchable{hosts: map[string]string{}}
	m := NewMain(s.cfg, slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo})))
	m.lookupHost = dns.lookup
	if err := m.Open(context.Background()); err != nil {
		t.Fatalf("Open while the NameServer name does not resolve: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })

	r := getReadyz(t, m.Addr())
	rmq := r.Checks["rocketmq"]
	t.Logf("readyz while %s does not resolve: %d %s rocketmq=%+v", name, r.code, r.Status, rmq)
	if rmq.Status != "down" || !strings.Contains(rmq.Error, name+":"+port+" does not resolve") {
		t.Errorf("readyz rocketmq = %+v, want down with an error naming %s:%s", rmq, name, port)
	}
	if r.code != http.StatusOK || r.Status != "ready" {
		t.Errorf("readyz = %d %s, want 200 ready (Redis takes the orders)", r.code, r.Status)
	}
	p := place(t, m.Addr(), "before-dns")
	if p.code != http.StatusAccepted || p.status != "QUEUED" {
		t.Fatalf("place while the name does not resolve = %+v, want 202 QUEUED", p)
	}

	dns.set(name, "127.0.0.1")
	if r := getReadyz(t, m.Addr()); r.Checks["rocketmq"].Status != "up" {
		t.Errorf("readyz rocketmq after the name resolves = %+v, want up", r.Checks["rocketmq"])
	}
	// The client asks its resolver again 10 s after it started, then
	// every 2 minutes; the drainer then places the queued order.
	waitFor(t, 60*time.Second, "the queued order to be placed in MySQL", func() bool {
		return s.rowStatus(p.id) == "PENDING_PAYMENT"
	})
	if !s.pay(m.Addr(), p.id) {
		t.Fatal("payment lost its compare-and-set")
	}
	waitFor(t, 15*time.Second, "the check-back to commit the paid order's event", func() bool {
		return s.published()[p.id] == 1
	})
	if later := place(t, m.Addr(), "after-dns"); later.code != http.StatusCreated {
		t.Errorf("place after the name resolves = %+v, want 201", later)
	}
}
