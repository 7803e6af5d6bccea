package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/testenv"
)

// TestNameServerByName: fulfillmentd configured with a NameServer host
// name (compose: namesrv-1:9876) starts and applies ORDER_PAID events.
func TestNameServerByName(t *testing.T) {
	s := newStack(t)
	_, port, _ := net.SplitHostPort(s.mq.NameServerAddr())
	s.cfg.RocketMQ.NameServers = []string{"localhost:" + port}
	s.fulfillmentd(nil)
	ev := newEvent()
	s.publish(ev)
	waitFor(t, 20*time.Second, "the event to be applied", func() bool { return s.shipments(ev.OrderID) == 1 })
}

// TestNameServerDoesNotResolve: with no NameServer name resolving,
// fulfillmentd refuses to start with an error naming each one (a
// supervisor restarts it); once a name resolves it starts and consumes.
func TestNameServerDoesNotResolve(t *testing.T) {
	s := newStack(t)
	_, port, _ := net.SplitHostPort(s.mq.NameServerAddr())
	s.cfg.RocketMQ.NameServers = []string{"namesrv-1.txorder.test:" + port, "namesrv-2.txorder.test:" + port}
	hosts := map[string][]string{}
	lookup := func(_ context.Context, host string) ([]string, error) {
		if ips, ok := hosts[host]; ok {
			return ips, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	open := func() (*Main, error) {
		m := NewMain(s.cfg, slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo})))
		m.lookupHost = lookup
		err := m.Open(context.Background())
		if err != nil {
			_ = m.Close()
			return nil, err
		}
		t.Cleanup(func() { _ = m.Close() })
		return m, nil
	}
	_, err := open()
	t.Logf("start while no name resolves: %v", err)
	for _, name := range s.cfg.RocketMQ.NameServers {
		if err == nil || !strings.Contains(err.Error(), name+" does not resolve") {
			t.Errorf("Open = %v, want an error naming %s", err, name)
		}
	}
	hosts["namesrv-2.txorder.test"] = []string{"127.0.0.1"}
	m, err := open()
	if err != nil {
		t.Fatalf("Open once namesrv-2 resolves: %v", err)
	}
	ev := newEvent()
	s.publish(ev)
	waitFor(t, 20*time.Second, "the event to be applied", func() bool { return s.shipments(ev.OrderID) == 1 })
	code, body := get(t, "http://"+m.Addr()+"/readyz")
	if code != 200 || !strings.Contains(body, `"rocketmq":{"status":"up"}`) {
		t.Errorf("readyz = %d %s, want ready with rocketmq up", code, body)
	}
}
