package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs rmqdev with args until the test ends and returns its server.
func start(t *testing.T, args ...string) (*rmqtest.Server, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	ready := make(chan *rmqtest.Server, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &logs, func(s *rmqtest.Server) { ready <- s }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("rmqdev %v returned %v", args, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("rmqdev %v did not stop", args)
		}
	})
	select {
	case s := <-ready:
		return s, &logs
	case err := <-done:
		t.Fatalf("rmqdev %v: %v\n%s", args, err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("rmqdev %v not ready", args)
	}
	return nil, nil
}

func route(t *testing.T, nsAddr, topic string) (*remoting.Command, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return remoting.Call(ctx, nsAddr, remoting.NewRequest(remoting.GetRouteInfoByTopic, map[string]string{"topic": topic}, nil))
}

func TestAllInOne(t *testing.T) {
	s, logs := start(t, "--namesrv-addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0", "--topics", "orders:8,payments",
		"--check-interval", "1s", "--check-timeout", "2s", "--check-max", "3", "--delay-scale", "0.01", "--max-queue-messages", "2")
	resp, err := route(t, s.NameServerAddr(), "orders")
	if err != nil || resp.Code != remoting.Success {
		t.Fatalf("route: %v %v", resp, err)
	}
	var rd struct {
		QueueDatas []struct {
			WriteQueueNums int `json:"writeQueueNums"`
		} `json:"queueDatas"`
		BrokerDatas []struct {
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerDatas"`
	}
	if err := json.Unmarshal(resp.Body, &rd); err != nil {
		t.Fatal(err)
	}
	if len(rd.QueueDatas) != 1 || rd.QueueDatas[0].WriteQueueNums != 8 || rd.BrokerDatas[0].BrokerAddrs["0"] != s.BrokerAddr() {
		t.Errorf("route %s, want 8 queues on %s", resp.Body, s.BrokerAddr())
	}
	if d := s.QueueDepths("payments"); len(d) != 4 {
		t.Errorf("payments queues %v, want 4", d)
	}
	for i := range 3 {
		if _, err := s.Publish("payments", 0, []byte{byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Messages("payments")); n != 2 {
		t.Errorf("payments keeps %d messages, want 2 with --max-queue-messages 2", n)
	}
	if got := s.DelayLevel(1); got != 10*time.Millisecond {
		t.Errorf("delay level 1 = %v, want 10ms with --delay-scale 0.01", got)
	}
	if !strings.Contains(logs.String(), "connection opened") {
		t.Errorf("no connection log line in:\n%s", logs.String())
	}
}

func TestSeparateHalves(t *testing.T) {
	ns, _ := start(t, "namesrv", "--addr", "127.0.0.1:0")
	br, _ := start(t, "broker", "--addr", "127.0.0.1:0", "--namesrv", ns.NameServerAddr(), "--register-interval", "50ms",
		"--topics", "orders")
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := route(t, ns.NameServerAddr(), "orders")
		if err == nil && resp.Code == remoting.Success && strings.Contains(string(resp.Body), br.BrokerAddr()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker never registered: %v %v", resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHelpAndUsage(t *testing.T) {
	for _, mode := range [][]string{nil, {"namesrv"}, {"broker"}} {
		var out syncBuffer
		err := run(context.Background(), append(mode, "--help"), &out, nil)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v --help: got %v, want flag.ErrHelp", mode, err)
		}
		help := out.String()
		for _, want := range []string{"NOT for production", "in memory", "-max-frame-size", "-log-level"} {
			if !strings.Contains(help, want) {
				t.Errorf("%v --help lacks %q:\n%s", mode, want, help)
			}
		}
	}
	var out syncBuffer
	if err := run(context.Background(), []string{"--no-such-flag"}, &out, nil); !errors.Is(err, errUsage) {
		t.Errorf("bad flag: got %v, want errUsage", err)
	}
	if err := run(context.Background(), []string{"--topics", "x:zero"}, &out, nil); !errors.Is(err, errUsage) {
		t.Errorf("bad topics: got %v, want errUsage", err)
	}
	if err := run(context.Background(), []string{"--namesrv-addr", "localhost:1"}, &out, nil); err == nil {
		t.Error("a host name listen address was accepted")
	}
}
