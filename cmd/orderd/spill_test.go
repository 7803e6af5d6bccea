package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/internal/testenv"
)

// spillDepth returns the spill queue's pending and dead counts.
func (s *stack) spillDepth(t testing.TB) (pending, dead int64) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	q, err := fallback.NewSpillQueue(rdb, fallback.CacheConfig{Prefix: s.cfg.Redis.KeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	pending, dead, err = q.Depth(context.Background())
	if err != nil {
		return -1, -1
	}
	return pending, dead
}

// rows counts order rows.
func (s *stack) rows(t testing.TB) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRocketMQDownBeforeStart: NameServer and broker are down when orderd
// starts. Placements are queued (202 QUEUED); once both are back the
// drainer places every queued order exactly once, and each pays and
// commits normally.
func TestRocketMQDownBeforeStart(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.mq.StopNameServer()
	s.mq.StopBroker()
	m := s.orderd()
	const n = 20
	var queued []placed
	for i := range n {
		p := place(t, m.Addr(), fmt.Sprintf("q-%d", i))
		if p.code != http.StatusAccepted || p.status != "QUEUED" {
			t.Fatalf("place %d with RocketMQ down = %+v, want 202 QUEUED", i, p)
		}
		queued = append(queued, p)
	}
	if code, st := getOrder(t, m.Addr(), queued[0].id); code != 200 || st != "QUEUED" {
		t.Fatalf("GET while queued = %d %s", code, st)
	}
	if again := place(t, m.Addr(), "q-0"); again.code != http.StatusOK || again.id != queued[0].id || again.status != "QUEUED" {
		t.Fatalf("retry while queued = %+v, want 200 with the queued order %s", again, queued[0].id)
	}
	if pending, _ := s.spillDepth(t); pending != n {
		t.Fatalf("spill pending = %d, want %d (one entry per order, the retry added none)", pending, n)
	}
	if err := s.mq.StartNameServer(); err != nil {
		t.Fatal(err)
	}
	if err := s.mq.StartBroker(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the drainer to place every queued order", func() bool {
		pending, dead := s.spillDepth(t)
		return pending == 0 && dead == 0 && s.rows(t) == n
	})
	for _, p := range queued {
		if s.rowStatus(p.id) != "PENDING_PAYMENT" {
			t.Fatalf("order %s is %q after draining", p.id, s.rowStatus(p.id))
		}
		if !s.pay(m.Addr(), p.id) {
			t.Fatalf("pay %s lost", p.id)
		}
	}
	waitFor(t, 15*time.Second, "every paid order announced", func() bool { return len(s.published()) == n })
	var ids []string
	for _, p := range queued {
		ids = append(ids, p.id)
	}
	s.announcedOnce(t, ids)
	if got := s.rows(t); got != n {
		t.Fatalf("rows = %d, want %d", got, n)
	}
}

// TestNameServerDownWithCachedRoutes: the producer keeps sending on the
// routes it has, so placements stay 201 and nothing is spilled needlessly.
func TestNameServerDownWithCachedRoutes(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	if p := place(t, m.Addr(), "warm"); p.code != http.StatusCreated {
		t.Fatalf("warm-up placement = %+v", p)
	}
	s.mq.StopNameServer()
	for i := range 20 {
		if p := place(t, m.Addr(), fmt.Sprintf("ns-down-%d", i)); p.code != http.StatusCreated {
			t.Fatalf("placement %d with the NameServer down = %+v, want 201", i, p)
		}
	}
	if pending, dead := s.spillDepth(t); pending != 0 || dead != 0 {
		t.Fatalf("spill = %d pending, %d dead; want nothing spilled", pending, dead)
	}
}

// TestBrokerStoppedMidBurst stops the broker during concurrent placements
// and starts it again: every answer is 201, 202 or 503; afterwards every
// 201/202 order is in MySQL exactly once and the stream is empty.
func TestBrokerStoppedMidBurst(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	b := s.burst(m.Addr(), "b",
		func() error { s.mq.StopBroker(); return nil },
		s.mq.StartBroker)
	if b.counts[http.StatusAccepted] == 0 {
		t.Fatal("nothing was spilled: the stop did not land during the burst")
	}
	waitForDrain(t, 30*time.Second, 3*time.Minute, "every accepted order in MySQL, the stream empty", func() int {
		pending, dead := s.spillDepth(t)
		if pending < 0 {
			return -1
		}
		return int(pending+dead) + max(0, len(b.kept)-s.rows(t))
	})
	for _, p := range b.kept {
		if s.rowStatus(p.id) == "" {
			t.Errorf("accepted order %s (%d) is not in MySQL", p.id, p.code)
		}
	}
	s.settleRefused(t, m.Addr(), len(b.kept), b.refused)
}

// TestDrainerKilledBeforeAck: a drainer dies after placing an order and
// before acknowledging its entry. Another orderd reclaims the entry; the
// order is not duplicated and at most one event per order is released.
func TestDrainerKilledBeforeAck(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.mq.StopBroker()
	first := NewMain(s.cfg, slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil)))
	var placedOnce sync.Once
	placed := make(chan uuid.UUID, 1)
	first.afterDrainPlace = func(id uuid.UUID) {
		// Crash here: stop the drainer's context so it never acknowledges.
		placedOnce.Do(func() { first.stopBackground(); placed <- id })
	}
	if err := first.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	p := place(t, first.Addr(), "killed-drainer")
	if p.code != http.StatusAccepted {
		t.Fatalf("place = %+v, want 202", p)
	}
	if err := s.mq.StartBroker(); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-placed:
		if id.String() != p.id {
			t.Fatalf("drained %s, want %s", id, p.id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the drainer never placed the order")
	}
	if pending, _ := s.spillDepth(t); pending != 1 {
		t.Fatalf("spill pending = %d, want the unacknowledged entry", pending)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := s.orderd() // reclaims entries idle for spill.claim_idle (2s here)
	waitFor(t, 20*time.Second, "the second drainer to settle the entry", func() bool {
		pending, dead := s.spillDepth(t)
		return pending == 0 && dead == 0
	})
	if got := s.rows(t); got != 1 {
		t.Fatalf("rows = %d, want 1", got)
	}
	if !s.pay(second.Addr(), p.id) {
		t.Fatal("payment lost")
	}
	waitFor(t, 10*time.Second, "the event", func() bool { return s.published()[p.id] >= 1 })
	// Let more check rounds pass: the second half message (rolled back on
	// the duplicate insert) must never be committed.
	waitFor(t, 10*time.Second, "every transaction decided", func() bool { return s.orderTx().Pending == 0 })
	s.announcedOnce(t, []string{p.id})
}

// TestRedisKilledWhileQueued: Redis (AOF, fsync always) is killed with
// orders in the spill queue; after a restart nothing queued is lost.
func TestRedisKilledWhileQueued(t *testing.T) {
	s := newStack(t, stackOptions{privateRedis: true})
	s.mq.StopBroker()
	m := s.orderd()
	const n = 10
	for i := range n {
		if p := place(t, m.Addr(), fmt.Sprintf("aof-%d", i)); p.code != http.StatusAccepted {
			t.Fatalf("place %d = %+v, want 202", i, p)
		}
	}
	if err := s.rd.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.rd.Start(); err != nil {
		t.Fatal(err)
	}
	if pending, _ := s.spillDepth(t); pending != n {
		t.Fatalf("after Redis kill -9 and restart: %d pending, want %d", pending, n)
	}
	if err := s.mq.StartBroker(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every queued order placed", func() bool {
		pending, _ := s.spillDepth(t)
		return pending == 0 && s.rows(t) == n
	})
}

// TestBrokerGivesUp: the payment's fast commit is lost on the network and
// orderd is down while the broker checks the paid order's half message;
// after CheckMax checks the broker discards it. When orderd returns, the
// reconciler publishes ORDER_PAID once.
func TestBrokerGivesUp(t *testing.T) {
	// The broker's first check comes 4 s after the placement: orderd must
	// be down by then, the lost fast commit's timeout included.
	s := newStack(t, stackOptions{brokerTxTimeout: 4 * time.Second, brokerCheckMax: 3,
		env: []string{"TXORDER_RECONCILER__GRACE=600ms", "TXORDER_FAST_COMMIT__TIMEOUT=300ms"}})
	m := s.orderd()
	p := place(t, m.Addr(), "given-up")
	if p.code != http.StatusCreated {
		t.Fatalf("place = %+v", p)
	}
	s.mq.DropNextEndTransactions(1) // the fast COMMIT
	if !s.pay(m.Addr(), p.id) {
		t.Fatalf("pay %s refused", p.id)
	}
	// Closed at once: before the first check (4s) and before the
	// reconciler's grace (600ms) would republish it. Close waits for the
	// lost fast commit's timeout.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.orderTx(); st.Pending != 1 || len(s.mq.Messages(topic)) != 0 {
		t.Fatalf("broker %+v after the close: want the half message open (the fast commit lost)", st)
	}
	waitFor(t, 15*time.Second, "the broker to discard the half message", func() bool {
		for _, msg := range s.mq.Messages("TRANS_CHECK_MAX_TIME_TOPIC") {
			if msg.Keys == p.id {
				return true
			}
		}
		return false
	})
	if len(s.mq.Messages(topic)) != 0 {
		t.Fatal("an event was published while orderd was down")
	}
	again := s.orderd()
	waitFor(t, 15*time.Second, "the reconciler to republish", func() bool { return s.published()[p.id] == 1 })
	waitFor(t, 10*time.Second, "the publish tracker to record it", func() bool {
		var at *time.Time
		_ = s.db.QueryRow(`SELECT published_at FROM orders WHERE id = ?`, p.id).Scan(&at)
		return at != nil
	})
	// More reconcile rounds pass (every 200ms): nothing is published twice.
	var reconciled float64
	waitFor(t, 10*time.Second, "several reconciler rounds", func() bool {
		reconciled = metricValue(t, again.Addr(), "txorder_reconciler_republished_total")
		return reconciled == 1 && metricValue(t, again.Addr(), "txorder_reconciler_oldest_unpublished_paid_seconds") == 0
	})
	if k := s.published()[p.id]; k != 1 {
		t.Fatalf("ORDER_PAID for the order = %d, want exactly 1", k)
	}
}

// TestDeadSpillEntries: every send fails (fault injection), so queued
// orders reach dead after spill.max_attempts; they are listed, and once the
// fault is gone a replay places them.
func TestDeadSpillEntries(t *testing.T) {
	const adminKey = "admin-key-0123456789abcdef"
	s := newStack(t, stackOptions{env: []string{
		"TXORDER_SPILL__MAX_ATTEMPTS=3", "TXORDER_AUTH__ADMIN_KEYS=ops:" + adminKey}})
	m := s.orderd()
	s.mq.FailSends(1) // SYSTEM_ERROR on every send
	const n = 5
	var ids []string
	for i := range n {
		p := place(t, m.Addr(), fmt.Sprintf("dead-%d", i))
		if p.code != http.StatusAccepted || p.status != "QUEUED" {
			t.Fatalf("place %d with failing sends = %+v, want 202 QUEUED", i, p)
		}
		ids = append(ids, p.id)
	}
	waitFor(t, 30*time.Second, "every entry dead", func() bool {
		pending, dead := s.spillDepth(t)
		return pending == 0 && dead == n
	})
	req, _ := http.NewRequest(http.MethodGet, "http://"+m.Addr()+"/v1/admin/spill?state=dead", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var listed struct{ Entries []fallback.DeadEntry }
	_ = json.NewDecoder(res.Body).Decode(&listed)
	res.Body.Close()
	if res.StatusCode != 200 || len(listed.Entries) != n || listed.Entries[0].Attempts != 3 {
		t.Fatalf("GET /v1/admin/spill = %d %+v", res.StatusCode, listed)
	}
	// The admin endpoint refuses the ordinary API key.
	req.Header.Set("Authorization", "Bearer "+testKey)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin endpoint with an API key = %v %v, want 401", res.StatusCode, err)
	}
	s.mq.ClearFaults()
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	q, _ := fallback.NewSpillQueue(rdb, fallback.CacheConfig{Prefix: s.cfg.Redis.KeyPrefix})
	for _, id := range ids {
		if err := q.Replay(context.Background(), uuid.MustParse(id)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "replayed entries placed", func() bool {
		pending, dead := s.spillDepth(t)
		return pending == 0 && dead == 0 && s.rows(t) == n
	})
}

// metricValue reads one unlabelled sample from orderd's /metrics (-1: absent).
func metricValue(t testing.TB, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v float64
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, name+" %g", &v); err == nil {
			return v
		}
	}
	return -1
}
