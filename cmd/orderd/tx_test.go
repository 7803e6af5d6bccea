package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/order"
)

// TestPaidOrderIsAnnouncedOnce: place → 201 → pay → the payment's fast
// commit (or, failing that, the next check-back) commits the half message
// and a real push consumer gets ORDER_PAID, with the order in the body; a
// second copy only ever comes from a check-back racing the fast commit.
func TestPaidOrderIsAnnouncedOnce(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()

	var mu sync.Mutex
	got := map[string][]order.PaidEvent{}
	c, err := rocketmq.NewPushConsumer(
		consumer.WithNsResolver(primitive.NewPassthroughResolver([]string{s.mq.NameServerAddr()})),
		consumer.WithGroupName("test-fulfillment"),
		consumer.WithInstance("test-consumer-"+uuid.NewString()[:8]),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Subscribe(topic, consumer.MessageSelector{}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, msg := range msgs {
			ev, err := order.DecodePaidEvent(msg.Body)
			if err != nil {
				t.Errorf("undecodable ORDER_PAID: %v", err)
				continue
			}
			got[msg.GetKeys()] = append(got[msg.GetKeys()], ev)
		}
		return consumer.ConsumeSuccess, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()

	p := place(t, m.Addr(), "happy")
	if p.code != http.StatusCreated {
		t.Fatalf("place = %+v", p)
	}
	unpaid := place(t, m.Addr(), "unpaid")
	// Several check rounds pass while it is unpaid: nothing is released.
	waitFor(t, 5*time.Second, "the half message to be checked twice", func() bool {
		for _, h := range s.mq.PendingHalfMessages() {
			if h.Keys == p.id && h.Properties["TRANSACTION_CHECK_TIMES"] >= "2" {
				return true
			}
		}
		return false
	})
	if n := len(s.mq.Messages(topic)); n != 0 {
		t.Fatalf("%d ORDER_PAID messages before payment", n)
	}
	if !s.pay(m.Addr(), p.id) {
		t.Fatal("payment lost its compare-and-set")
	}
	paidAt := time.Now()
	waitFor(t, 10*time.Second, "the ORDER_PAID event to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got[p.id]) > 0
	})
	t.Logf("paid → consumed in %s (check interval %s)", time.Since(paidAt).Round(time.Millisecond), checkInterval)
	// Let a few more check rounds pass: no second commit, nothing for the unpaid order.
	rounds := s.orderTx()
	waitFor(t, 5*time.Second, "more check rounds", func() bool {
		for _, h := range s.mq.PendingHalfMessages() {
			if h.Keys == unpaid.id && h.Properties["TRANSACTION_CHECK_TIMES"] >= "6" {
				return true
			}
		}
		return false
	})
	s.announcedOnce(t, []string{p.id})
	mu.Lock()
	defer mu.Unlock()
	if len(got[p.id]) != s.published()[p.id] || len(got) != 1 {
		t.Fatalf("consumed %v, want the %d event(s) published for %s only", got, s.published()[p.id], p.id)
	}
	ev := got[p.id][0]
	if ev.OrderID.String() != p.id || ev.Total != 100 || ev.Currency != "EUR" || len(ev.Items) != 1 {
		t.Fatalf("event body = %+v", ev)
	}
	if st := s.orderTx(); st.Committed != 1 || rounds.Committed != 1 || st.Pending != 1 {
		t.Fatalf("broker transactions = %+v, want 1 committed and the unpaid one pending", st)
	}
}

// TestUnpaidOrderIsClosed: never paid → at the deadline the check-back
// closes the order and rolls the half message back; nothing is published.
func TestUnpaidOrderIsClosed(t *testing.T) {
	s := newStack(t, stackOptions{paymentWindow: time.Second})
	m := s.orderd()
	p := place(t, m.Addr(), "never-paid")
	if p.code != http.StatusCreated {
		t.Fatalf("place = %+v", p)
	}
	waitFor(t, 10*time.Second, "the order to be closed and rolled back", func() bool {
		return s.rowStatus(p.id) == "CLOSED" && s.orderTx().RolledBack == 1
	})
	if s.pay(m.Addr(), p.id) || s.paymentStatus(p.id) != "REFUND_REQUIRED" {
		t.Fatalf("a closed order took a payment (recorded %q), want 409 and REFUND_REQUIRED", s.paymentStatus(p.id))
	}
	if st := s.orderTx(); st.Pending != 0 || st.Committed != 0 || len(s.mq.Messages(topic)) != 0 {
		t.Fatalf("broker = %+v, %d messages; want nothing committed or pending", st, len(s.mq.Messages(topic)))
	}
}

// TestPaymentRacesDeadline pays orders right around their deadline, many
// times. Every order must end PAID with exactly one event or CLOSED with
// none.
func TestPaymentRacesDeadline(t *testing.T) {
	const window = 700 * time.Millisecond
	s := newStack(t, stackOptions{paymentWindow: window})
	m := s.orderd()
	const n = 40
	ids := make([]string, n)
	var wg sync.WaitGroup
	var payWon atomic.Int32
	for i := range n {
		p := place(t, m.Addr(), fmt.Sprintf("race-%d", i))
		if p.code != http.StatusCreated {
			t.Fatalf("place %d = %+v", i, p)
		}
		ids[i] = p.id
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Pay from one interval before the deadline to past the first
			// check-backs (1s after placement, then every 250ms).
			from, to := window-checkInterval, txTimeout+2*checkInterval
			time.Sleep(from + time.Duration(i%10)*(to-from)/10)
			if s.pay(m.Addr(), p.id) {
				payWon.Add(1)
			}
		}()
	}
	wg.Wait()
	waitFor(t, 15*time.Second, "every transaction to be decided", func() bool {
		st := s.orderTx()
		return st.Pending == 0 && st.Committed+st.RolledBack == n
	})
	pub := s.published()
	var paid, closed int
	var paidIDs []string
	for _, id := range ids {
		switch st := s.rowStatus(id); st {
		case "PAID":
			paid++
			paidIDs = append(paidIDs, id)
			if pub[id] < 1 || s.paymentStatus(id) != "APPLIED" {
				t.Errorf("paid order %s has %d events and payment %q, want one and APPLIED", id, pub[id], s.paymentStatus(id))
			}
		case "CLOSED":
			closed++
			if pub[id] != 0 || s.paymentStatus(id) != "REFUND_REQUIRED" {
				t.Errorf("closed order %s has %d events and payment %q, want 0 and REFUND_REQUIRED", id, pub[id], s.paymentStatus(id))
			}
		default:
			t.Errorf("order %s ended %q", id, st)
		}
	}
	s.announcedOnce(t, paidIDs)
	t.Logf("%d paid, %d closed (payments that won their CAS: %d)", paid, closed, payWon.Load())
	if int(payWon.Load()) != paid {
		t.Fatalf("%d payments won but %d orders are PAID", payWon.Load(), paid)
	}
}

// TestMySQLKilledBeforePlacements: with mariadbd killed, placements are
// cached in Redis (202 ACCEPTED); after a restart the check-backs (and the
// sweeper) store them, clear the cache, and they behave like any order.
func TestMySQLKilledBeforePlacements(t *testing.T) {
	s := newStack(t, stackOptions{privateMySQL: true})
	m := s.orderd()
	if err := s.my.Kill(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var accepted []placed
	for i := range n {
		p := place(t, m.Addr(), fmt.Sprintf("down-%d", i))
		if p.code != http.StatusAccepted || p.status != "ACCEPTED" {
			t.Fatalf("place %d with MySQL down = %+v, want 202 ACCEPTED", i, p)
		}
		accepted = append(accepted, p)
	}
	if code, st := getOrder(t, m.Addr(), accepted[0].id); code != 200 || st != "ACCEPTED" {
		t.Fatalf("GET while cached = %d %s", code, st)
	}
	// A retry with the same key during the outage finds the cached order.
	if again := place(t, m.Addr(), "down-0"); again.code != http.StatusOK || again.id != accepted[0].id {
		t.Fatalf("retry during outage = %+v, want 200 with %s", again, accepted[0].id)
	}
	if err := s.my.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "every cached order stored in MySQL and the cache empty", func() bool {
		for _, p := range accepted {
			if s.rowStatus(p.id) != "PENDING_PAYMENT" {
				return false
			}
		}
		return s.cacheSize(t) == 0
	})
	var rows int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&rows); err != nil || rows != n {
		t.Fatalf("rows = %d (%v), want %d: no order lost, none duplicated", rows, err, n)
	}
	for _, p := range accepted {
		if code, st := getOrder(t, m.Addr(), p.id); code != 200 || st != "PENDING_PAYMENT" {
			t.Fatalf("GET after recovery = %d %s", code, st)
		}
		if !s.pay(m.Addr(), p.id) {
			t.Fatalf("pay %s lost", p.id)
		}
	}
	waitFor(t, 15*time.Second, "every paid order announced", func() bool { return len(s.published()) == n })
	var ids []string
	for _, p := range accepted {
		ids = append(ids, p.id)
	}
	s.announcedOnce(t, ids)
}

// TestMySQLKilledDuringBurst kills mariadbd in the middle of concurrent
// placements and restarts it. Every request gets 201, 202 or 503; every
// 201/202 order ends in MySQL; no 503 order exists anywhere.
func TestMySQLKilledDuringBurst(t *testing.T) {
	s := newStack(t, stackOptions{privateMySQL: true})
	m := s.orderd()
	b := s.burst(m.Addr(), "burst",
		func() error { return s.my.Kill() },
		func() error { return s.my.Start() })
	if b.counts[http.StatusAccepted] == 0 {
		t.Fatal("no placement was cached: the kill did not land during the burst")
	}
	// Judged by progress, not a fixed time (see waitForDrain): under -race
	// on a shared 2-core machine the cached inserts compete with a check
	// round over every half message every 250ms, the MySQL breaker reopens
	// on slow check-backs after mariadbd's restart, and the drain took 26
	// to 62 s; 20 s was measured too short there.
	waitForDrain(t, 30*time.Second, 3*time.Minute, "every accepted order in MySQL, the cache empty", func() int {
		missing := 0
		for _, p := range b.kept {
			if s.rowStatus(p.id) == "" {
				missing++
			}
		}
		cached := s.cacheSize(t)
		if cached < 0 {
			return -1
		}
		return missing + int(cached)
	})
	s.settleRefused(t, m.Addr(), len(b.kept), b.refused)
}

// burstResult sorts a burst's answers.
type burstResult struct {
	counts        map[int]int
	kept, refused []placed // 201/202, and 503
}

// burst places 320 orders from 8 concurrent clients, runs fault after a
// quarter of them and heal after three quarters, and sorts the answers;
// anything but 201, 202 or 503 fails the test.
func (s *stack) burst(addr, prefix string, fault, heal func() error) burstResult {
	t := s.t.(*testing.T)
	t.Helper()
	const workers, perWorker = 8, 40
	results := make(chan placed, workers*perWorker)
	var done atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				results <- place(t, addr, fmt.Sprintf("%s-%d-%d", prefix, w, i))
				done.Add(1)
			}
		}()
	}
	waitFor(t, 30*time.Second, "a quarter of the burst", func() bool { return done.Load() >= workers*perWorker/4 })
	if err := fault(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "three quarters of the burst", func() bool { return done.Load() >= 3*workers*perWorker/4 })
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	b := burstResult{counts: map[int]int{}}
	for p := range results {
		b.counts[p.code]++
		switch p.code {
		case http.StatusCreated, http.StatusAccepted:
			b.kept = append(b.kept, p)
		case http.StatusServiceUnavailable:
			b.refused = append(b.refused, p)
		default:
			t.Errorf("placement %s answered %d", p.key, p.code)
		}
	}
	t.Logf("burst answers: %v", b.counts)
	return b
}

// settleRefused checks what a client that got 503 and retries with the same
// key sees: the order the first attempt stored after all (200; its write
// timed out with an unknown outcome and the half message was left for the
// check-back) or a new order. Rows must then be exactly the accepted ones
// plus those.
func (s *stack) settleRefused(t testing.TB, addr string, accepted int, refused []placed) {
	t.Helper()
	existed, placedNow := 0, 0
	for _, p := range refused {
		again := place(t, addr, p.key)
		// 409 in progress: the first attempt's outcome was unknown (a
		// Redis write that timed out), so its claim stands until it is
		// order.ServiceConfig.InFlight (30 s) old; retry as the answer
		// says (Retry-After: 1), as a client would.
		for deadline := time.Now().Add(45 * time.Second); again.code == http.StatusConflict && time.Now().Before(deadline); {
			time.Sleep(time.Second)
			again = place(t, addr, p.key)
		}
		switch again.code {
		case http.StatusOK:
			existed++
		case http.StatusCreated, http.StatusAccepted:
			placedNow++
		default:
			t.Errorf("retry of refused %s = %d", p.key, again.code)
		}
	}
	t.Logf("%d refused placements: %d had been stored after all (outcome unknown), %d placed on retry", len(refused), existed, placedNow)
	// A retry answered 202 was cached in Redis (the MySQL breaker may still
	// be open just after the restart): it reaches MySQL with the next sweep.
	want := accepted + existed + placedNow
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s.rows(t) >= want && s.cacheSize(t) == 0 {
			break
		}
	}
	if got := s.rows(t); got != want {
		t.Fatalf("rows = %d, want %d accepted + %d found on retry + %d placed on retry", got, accepted, existed, placedNow)
	}
}

// TestMySQLAndRedisDown: nothing can record the order → 503, and nothing is
// half-committed: orderd refuses before sending (it cannot even check the
// idempotency key), or the half message is rolled back (the listener test
// TestOutages covers Execute's ROLLBACK when both are down).
func TestMySQLAndRedisDown(t *testing.T) {
	s := newStack(t, stackOptions{privateMySQL: true, privateRedis: true})
	m := s.orderd()
	if err := s.my.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.rd.Kill(); err != nil {
		t.Fatal(err)
	}
	p := place(t, m.Addr(), "nowhere")
	if p.code != http.StatusServiceUnavailable {
		t.Fatalf("place with MySQL and Redis down = %+v, want 503", p)
	}
	// END_TRANSACTION is one-way: give the broker a few check rounds.
	waitFor(t, 5*time.Second, "no open transaction", func() bool {
		st := s.orderTx()
		return st.Pending == 0 && st.Committed == 0
	})
	if err := s.my.Start(); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("rows = %d (%v), want 0", rows, err)
	}
}

// cacheSize counts orders waiting in the Redis cache (-1: Redis down).
func (s *stack) cacheSize(t testing.TB) int64 {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	n, err := rdb.SCard(context.Background(), s.cfg.Redis.KeyPrefix+"cache:ids").Result()
	if err != nil {
		return -1
	}
	return n
}

// TestReplayWhenRedisForgotTheKey: Redis's key index is only a fast path.
// With the key gone from Redis (TTL passed, or its write failed), a retry
// conflicts on MySQL's unique key and still gets the original order, and a
// different body under that key is still 409.
func TestReplayWhenRedisForgotTheKey(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	first := place(t, m.Addr(), "forgotten")
	if first.code != http.StatusCreated {
		t.Fatalf("place = %+v", first)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	if n, err := rdb.Del(context.Background(), s.cfg.Redis.KeyPrefix+"idem:demo:forgotten").Result(); err != nil || n != 1 {
		t.Fatalf("delete the remembered key: %d %v", n, err)
	}
	again := place(t, m.Addr(), "forgotten")
	if again.code != http.StatusOK || again.id != first.id {
		t.Fatalf("retry = %+v, want 200 with %s", again, first.id)
	}
	if got := s.rows(t); got != 1 {
		t.Fatalf("rows = %d, want 1", got)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr()+"/v1/orders", strings.NewReader(
		`{"customer_id":"c-2","currency":"EUR","items":[{"sku":"S","name":"Widget","quantity":1,"unit_price":100}]}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "forgotten")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("other body under the forgotten key = %d, want 409", res.StatusCode)
	}
	// The rolled-back half messages of the two conflicting attempts leave
	// nothing open.
	waitFor(t, 10*time.Second, "only the order's own transaction open", func() bool { return s.orderTx().Pending == 1 })
}

// TestSameKeyConcurrently: many requests with one idempotency key at once,
// while MySQL is down (orders would be cached) and while sends hang
// (orders would be spilled after the send timeout): exactly one order is
// made; every answer is that order (201/202/200) or 409 in progress.
func TestSameKeyConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(s *stack) func()
	}{
		{"mysql down", func(s *stack) func() {
			if err := s.my.Kill(); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := s.my.Start(); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"sends hang", func(s *stack) func() {
			s.mq.DelayResponses(1500 * time.Millisecond) // past the 1s send timeout
			return s.mq.ClearFaults
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Redis is not this test's fault: with the stack's 300ms
			// bound, a Redis stalled by the loaded machine's disk (AOF
			// fsync always) made a replay's read fail (503: "cannot be
			// read now"). The longer bound needs a longer transaction
			// timeout (orderd checks the sum at start).
			s := newStack(t, stackOptions{privateMySQL: true, brokerTxTimeout: 4 * time.Second,
				env: []string{"TXORDER_REDIS__TIMEOUT=1s", "TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=4s"}})
			m := s.orderd()
			heal := tc.fault(s)
			const n = 8
			answers := make(chan placed, n)
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() { defer wg.Done(); answers <- place(t, m.Addr(), "one-key") }()
			}
			wg.Wait()
			close(answers)
			ids := map[string]bool{}
			codes := map[int]int{}
			for a := range answers {
				codes[a.code]++
				switch a.code {
				case http.StatusCreated, http.StatusAccepted, http.StatusOK:
					ids[a.id] = true
				case http.StatusConflict: // in progress
				default:
					t.Errorf("answer %d", a.code)
				}
			}
			t.Logf("answers: %v", codes)
			if len(ids) != 1 {
				t.Fatalf("%d different orders for one key: %v", len(ids), ids)
			}
			heal()
			var id string
			for k := range ids {
				id = k
			}
			waitFor(t, 30*time.Second, "the order in MySQL", func() bool { return s.rowStatus(id) != "" })
			if again := place(t, m.Addr(), "one-key"); again.code != http.StatusOK || again.id != id {
				t.Fatalf("retry after recovery = %+v, want 200 with %s", again, id)
			}
			waitFor(t, 30*time.Second, "nothing left in Redis", func() bool {
				pending, _ := s.spillDepth(t)
				return pending == 0 && s.cacheSize(t) == 0
			})
			if got := s.rows(t); got != 1 {
				t.Fatalf("rows = %d, want 1", got)
			}
		})
	}
}

// TestStartsWhileMySQLIsDown: a replica restarted during a MySQL outage
// starts on the existing schema (migrations skipped with a warning) and
// accepts orders into the cache instead of staying down with MySQL.
func TestStartsWhileMySQLIsDown(t *testing.T) {
	s := newStack(t, stackOptions{privateMySQL: true})
	first := s.orderd() // migrates
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.my.Kill(); err != nil {
		t.Fatal(err)
	}
	m := s.orderd()
	p := place(t, m.Addr(), "restarted-during-outage")
	if p.code != http.StatusAccepted || p.status != "ACCEPTED" {
		t.Fatalf("place = %+v, want 202 ACCEPTED", p)
	}
	if err := s.my.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the cached order in MySQL", func() bool { return s.rowStatus(p.id) == "PENDING_PAYMENT" })
}
