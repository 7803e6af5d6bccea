package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/loadgen"
	"github.com/txorder/txorder/internal/testenv"
)

// replicaSet is n orderd processes on one stack, each on a port of its own
// that it keeps across restarts, with its own RocketMQ instance name.
type replicaSet struct {
	s     *stack
	env   [][]string
	procs []*testenv.Service
	urls  []string
}

func startReplicas(t testing.TB, s *stack, n int, extraEnv ...string) *replicaSet {
	t.Helper()
	rs := &replicaSet{s: s}
	for k := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		env := append(append([]string{}, s.env...),
			"TXORDER_HTTP__ADDR="+addr,
			fmt.Sprintf("TXORDER_ROCKETMQ__INSTANCE_NAME=orderd-%d-%s", k+1, uuid.NewString()[:8]),
			"TXORDER_LOG__LEVEL=info")
		env = append(env, extraEnv...)
		rs.env = append(rs.env, env)
		rs.procs = append(rs.procs, startProcess(t, env))
		rs.urls = append(rs.urls, "http://"+addr)
	}
	return rs
}

// restart starts replica k again on its port.
func (rs *replicaSet) restart(t testing.TB, k int) {
	t.Helper()
	rs.procs[k] = startProcess(t, rs.env[k])
}

// runLoad runs the load over the replicas in the background; completed
// counts finished placements. Cancel ctx to end it.
func runLoad(ctx context.Context, cfg loadgen.Config, completed *atomic.Int64) <-chan loadgen.Result {
	cfg.OnResult = func(loadgen.Outcome) { completed.Add(1) }
	out := make(chan loadgen.Result, 1)
	go func() {
		res, _ := loadgen.Run(ctx, cfg)
		out <- res
	}()
	return out
}

// settle waits until every accepted order is in MySQL, then until each
// PAID one's event is on the topic, and checks: an event per paid order
// (a second copy only where the broker accepted a second COMMIT, a
// check-back racing the fast commit), no event for an unpaid one, no half
// message open but those of orders still waiting for payment, and one row
// per accepted order.
func (rs *replicaSet) settle(t testing.TB, accepted []string) {
	t.Helper()
	s := rs.s
	waitFor(t, 60*time.Second, "every accepted order in MySQL", func() bool {
		for _, id := range accepted {
			if s.rowStatus(id) == "" {
				return false
			}
		}
		return true
	})
	status := map[string]string{}
	for _, id := range accepted {
		status[id] = s.rowStatus(id)
	}
	waitFor(t, 60*time.Second, "each paid order's event committed and only unpaid orders' half messages open", func() bool {
		events := s.messagesByKey(topic)
		for id, st := range status {
			if st == "PAID" && events[id] == 0 {
				return false
			}
		}
		for _, b := range s.allBrokers() {
			for _, m := range b.PendingHalfMessages() {
				if !strings.HasPrefix(m.Keys, "txorder-warmup-") && status[m.Keys] != "PENDING_PAYMENT" {
					return false
				}
			}
		}
		return true
	})
	events := s.messagesByKey(topic)
	paid, dups := 0, 0
	for id, st := range status {
		switch {
		case st == "PAID" && events[id] == 0, st != "PAID" && events[id] != 0:
			t.Errorf("order %s (%s): %d events", id, st, events[id])
		case st == "PAID":
			paid++
			dups += events[id] - 1
		}
	}
	if extra := s.extraCommits(); dups != extra {
		t.Errorf("%d duplicate events, but the brokers accepted %d second COMMITs: something else announced twice", dups, extra)
	}
	if got := s.rows(t); got != len(accepted) {
		t.Errorf("%d order rows for %d accepted orders: an order was made twice or one nobody was told about", got, len(accepted))
	}
	t.Logf("%d accepted orders in MySQL, %d paid, each announced (%d second copies from a check-back racing the fast commit)", len(accepted), paid, dups)
}

func logReplicas(t testing.TB, s loadgen.Summary) {
	t.Helper()
	t.Logf("final answers %v (retried %d), paid %d", s.PlaceCodes, s.Retried, s.Paid)
	for _, r := range s.Replicas {
		t.Logf("  %s: placements %v, payments %v", r.URL, r.PlaceCodes, r.PayCodes)
	}
}

// TestReplicaKilledWithPlacementsInFlight: three orderd processes behind a
// readiness-polling client, two broker groups. The orders table is locked
// so that placements pile up inside every replica, each after its half
// message was sent and before its row is written; one replica is then
// SIGKILLed and the table unlocked. The placements it held get no answer:
// the client retries each with the same Idempotency-Key on a live replica,
// gets 409 idempotency_key_in_progress while the dead one's claim is young
// and places the order once the claim is taken over (30 s). The dead
// replica's half messages are checked by the other replicas (the broker
// picks the next producer of the group) and rolled back: their orders were
// never stored. The others' placements that waited on the lock are stored.
// In the end every accepted order is one row, each paid one one event, and
// no half message is open but those of orders waiting for payment.
func TestReplicaKilledWithPlacementsInFlight(t *testing.T) {
	s := newStack(t, stackOptions{brokerTxTimeout: 3500 * time.Millisecond})
	s.addBroker()
	// A local transaction that can wait 1.5 s on the lock (killEnv), and a
	// broker that checks only after it.
	rs := startReplicas(t, s, 3, killEnv(s)[len(s.env):]...)
	var completed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := runLoad(ctx, loadgen.Config{URLs: rs.urls, APIKey: testKey, WebhookSecret: webhookSecret,
		Rate: 60, Concurrency: 12, Count: 300, PayFraction: 0.7, PayRetryFor: 20 * time.Second,
		RetryFor: 45 * time.Second, ReadyPoll: 100 * time.Millisecond, Timeout: 5 * time.Second}, &completed)

	waitFor(t, 30*time.Second, "100 placements", func() bool { return completed.Load() >= 100 })
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "placements waiting on the lock in the replicas", func() bool {
		var n int
		_ = s.db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO orders%'`).Scan(&n)
		return n >= 6
	})
	rs.procs[1].Kill()
	if _, err := conn.ExecContext(ctx, `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	rs.restart(t, 1)
	res := <-results
	logReplicas(t, res.Summary)
	sum := res.Summary
	if sum.Replicas[1].PlaceCodes["error"] == 0 {
		t.Fatalf("no placement was in flight in the killed replica: %v", sum.Replicas[1].PlaceCodes)
	}
	for code, n := range sum.PlaceCodes {
		if code != "200" && code != "201" && code != "202" {
			t.Errorf("%d placements ended with %s after retries", n, code)
		}
	}
	if len(res.Accepted) != 300 {
		t.Fatalf("%d of 300 placements accepted", len(res.Accepted))
	}
	rs.settle(t, res.Accepted)
	// The dead replica's half messages: orders never stored, so rolled back.
	accepted := map[string]bool{}
	for _, id := range res.Accepted {
		accepted[id] = true
	}
	orphans := 0
	for key := range s.halvesByKey() {
		if !strings.HasPrefix(key, "txorder-warmup-") && !accepted[key] {
			orphans++
			if s.rowStatus(key) != "" {
				t.Errorf("half message %s of an order nobody was told about has a row", key)
			}
		}
	}
	t.Logf("%d half messages of the killed replica's unanswered placements rolled back by the others' check-backs", orphans)
}

// TestRollingRestartUnderLoad: three orderd processes are stopped with
// SIGTERM and started again one at a time while a client that polls
// /readyz (like a load balancer) places and pays orders. Each replica
// answers /readyz 503 as soon as it is told to stop and keeps serving for
// http.drain_delay before it closes its listener, so no request goes
// unanswered and no placement ends in a 5xx; every accepted order is one
// row and, paid, one event.
func TestRollingRestartUnderLoad(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.addBroker()
	// The client polls every 100ms; one second covers that many times over.
	rs := startReplicas(t, s, 3, "TXORDER_HTTP__DRAIN_DELAY=1s")
	var completed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := runLoad(ctx, loadgen.Config{URLs: rs.urls, APIKey: testKey, WebhookSecret: webhookSecret,
		Rate: 60, Concurrency: 12, Count: 5000, Duration: 2 * time.Minute, PayFraction: 1, PayRetryFor: 20 * time.Second,
		RetryFor: 10 * time.Second, ReadyPoll: 100 * time.Millisecond, Timeout: 5 * time.Second}, &completed)
	for k := range rs.procs {
		at := completed.Load()
		waitFor(t, 30*time.Second, "placements before the next restart", func() bool { return completed.Load() >= at+40 })
		if !rs.procs[k].Stop(30 * time.Second) {
			t.Fatalf("replica %d did not exit within 30s of SIGTERM", k+1)
		}
		rs.restart(t, k)
	}
	at := completed.Load()
	waitFor(t, 30*time.Second, "placements after the last restart", func() bool { return completed.Load() >= at+40 })
	cancel()
	res := <-results
	logReplicas(t, res.Summary)
	sum := res.Summary
	for code, n := range sum.PlaceCodes {
		if code != "201" && code != "202" {
			t.Errorf("%d placements ended with %s; a rolling restart must cost none", n, code)
		}
	}
	for _, r := range sum.Replicas {
		if n := r.PlaceCodes["error"] + r.PayCodes["error"]; n > 0 {
			t.Errorf("%s left %d requests without an answer: readiness did not go down before the listener closed", r.URL, n)
		}
	}
	rs.settle(t, res.Accepted)
}
