package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

// addBroker starts a second broker group (broker-b) that registers with the
// stack's NameServer, as `rmqdev broker --broker-name broker-b` does in the
// local stack: half messages, check-backs and consumption are then spread
// over two groups.
func (s *stack) addBroker() *rmqtest.Server {
	s.t.Helper()
	b := rmqtest.RunT(s.t, rmqtest.Options{NoNameServer: true, RegisterTo: []string{s.mq.NameServerAddr()},
		BrokerName: "broker-b", TransactionTimeout: s.brokerTxTimeout, CheckInterval: s.brokerCheckInterval, CheckMax: 1000,
		Topics: map[string]int{topic: 4}})
	s.brokers = append(s.brokers, b)
	return b
}

// allBrokers is the stack's first broker and any added one.
func (s *stack) allBrokers() []*rmqtest.Server { return append([]*rmqtest.Server{s.mq}, s.brokers...) }

// messagesByKey counts the messages of a topic on every broker by key.
func (s *stack) messagesByKey(topic string) map[string]int {
	out := map[string]int{}
	for _, b := range s.allBrokers() {
		for _, m := range b.Messages(topic) {
			out[m.Keys]++
		}
	}
	return out
}

// halvesByKey counts, per key, the distinct half messages on every broker
// (every check re-puts a copy of a half message with the same id).
func (s *stack) halvesByKey() map[string]int {
	ids := map[string]map[string]bool{}
	for _, b := range s.allBrokers() {
		for _, m := range b.Messages(rmqtest.HalfTopic) {
			if ids[m.Keys] == nil {
				ids[m.Keys] = map[string]bool{}
			}
			ids[m.Keys][m.MsgID] = true
		}
	}
	out := make(map[string]int, len(ids))
	for k, v := range ids {
		out[k] = len(v)
	}
	return out
}

// extraCommits sums the COMMITs the brokers accepted beyond each
// transaction's first (a check-back racing the payment's fast commit):
// each wrote one more copy of an event, which consumers absorb.
func (s *stack) extraCommits() int {
	n := 0
	for _, b := range s.allBrokers() {
		n += b.Transactions().ExtraCommits
	}
	return n
}

// replicas opens n orderd replicas on the stack, each with its own
// RocketMQ instance name (the client keeps one instance per IP and name)
// and its own port; their logs carry replica=orderd-k.
func (s *stack) replicas(n int) []*Main {
	s.t.Helper()
	var ms []*Main
	for k := 1; k <= n; k++ {
		cfg := s.cfg
		cfg.RocketMQ.InstanceName = fmt.Sprintf("%s-r%d", s.cfg.RocketMQ.InstanceName, k)
		logger := slog.New(slog.NewTextHandler(testenv.LogWriter(s.t), &slog.HandlerOptions{Level: slog.LevelInfo})).
			With("replica", fmt.Sprintf("orderd-%d", k))
		m := NewMain(cfg, logger)
		if err := m.Open(context.Background()); err != nil {
			s.t.Fatal(err)
		}
		s.t.Cleanup(func() { _ = m.Close() })
		ms = append(ms, m)
	}
	return ms
}

// counter sums a metric of one replica over its label sets.
func counter(t testing.TB, m *Main, name string) float64 {
	t.Helper()
	mfs, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			sum += mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	return sum
}

// shares is each replica's value of a counter, and their sum.
func shares(t testing.TB, ms []*Main, name string) ([]float64, float64) {
	var each []float64
	var sum float64
	for _, m := range ms {
		v := counter(t, m, name)
		each = append(each, v)
		sum += v
	}
	return each, sum
}

func newOrderAt(now, deadline time.Time, key string) *order.Order {
	return &order.Order{ID: uuid.Must(uuid.NewV7()), CustomerID: "c-1", Currency: "EUR", Total: 100,
		Status: order.StatusPendingPayment, Items: []order.Item{{SKU: "S", Name: "Widget", Quantity: 1, UnitPrice: 100}},
		PaymentDeadline: deadline, CreatedAt: now, UpdatedAt: now, ClientID: "demo", IdempotencyKey: key, RequestHash: "h-" + key}
}

// TestBackgroundJobsOnThreeReplicas: every background job runs on three
// replicas at once over one MySQL, one Redis and two broker groups, each
// with a backlog: orders cached in Redis during a MySQL outage (cache
// sweeper), orders spilled while RocketMQ was down, some of them read and
// never acknowledged by a replica that then died (drainer: claims and
// XAUTOCLAIM reclaims), pending orders past their deadline whose half
// message is gone (closer), and paid orders whose event the topic never
// saw (reconciler). Every backlog is worked off, and no order's outcome is
// done twice: each cached and spilled order is one row, each spilled order
// one half message, each closed order counted once, each republished
// order one event. Each replica's share is logged.
func TestBackgroundJobsOnThreeReplicas(t *testing.T) {
	const n = 150
	s := newStack(t, stackOptions{env: []string{
		"TXORDER_CLOSER__INTERVAL=100ms", "TXORDER_CLOSER__BATCH=10",
		"TXORDER_RECONCILER__BATCH=10",
	}})
	s.addBroker()
	ctx := context.Background()
	if _, err := migrations.Up(ctx, s.db); err != nil {
		t.Fatal(err)
	}
	store, err := order.NewStore(s.db, order.StoreConfig{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	ccfg := fallback.CacheConfig{Prefix: s.cfg.Redis.KeyPrefix, IdempotencyTTL: time.Hour, Timeout: 5 * time.Second}
	cache, err := fallback.NewOrderCache(rdb, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	spill, err := fallback.NewSpillQueue(rdb, ccfg)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now().UTC().Truncate(time.Microsecond)
	var cached, spilled, expired, paid []string
	for i := range n {
		o := newOrderAt(now, now.Add(time.Hour), fmt.Sprintf("cached-%d", i))
		if err := cache.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
		cached = append(cached, o.ID.String())

		o = newOrderAt(now, now.Add(time.Hour), fmt.Sprintf("spilled-%d", i))
		if err := spill.Append(ctx, o); err != nil {
			t.Fatal(err)
		}
		spilled = append(spilled, o.ID.String())

		o = newOrderAt(now.Add(-2*time.Hour), now.Add(-time.Hour), fmt.Sprintf("expired-%d", i))
		if err := store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		expired = append(expired, o.ID.String())

		o = newOrderAt(now.Add(-2*time.Hour), now.Add(time.Hour), fmt.Sprintf("paid-%d", i))
		if err := store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		if won, err := store.Transition(ctx, nil, o.ID, order.StatusPendingPayment, order.StatusPaid, now.Add(-time.Hour)); err != nil || !won {
			t.Fatalf("pay %s: %v %v", o.ID, won, err)
		}
		paid = append(paid, o.ID.String())
	}
	// A replica that died after reading a third of the spilled entries:
	// they stay pending under its consumer name until someone reclaims them.
	stream := s.cfg.Redis.KeyPrefix + "spill:stream"
	if err := rdb.XGroupCreateMkStream(ctx, stream, fallback.DrainGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: fallback.DrainGroup, Consumer: "orderd-dead-replica",
		Streams: []string{stream, ">"}, Count: n / 3}).Err(); err != nil {
		t.Fatal(err)
	}

	ms := s.replicas(3)
	inMySQL := func(ids []string, status string) int {
		found := 0
		for _, id := range ids {
			if st := s.rowStatus(id); st != "" && (status == "" || st == status) {
				found++
			}
		}
		return found
	}
	waitFor(t, 60*time.Second, "every backlog worked off", func() bool {
		size, _ := cache.Size(ctx)
		pending, _ := s.spillDepth(t)
		return size == 0 && pending == 0 && inMySQL(cached, "") == n && inMySQL(spilled, "") == n &&
			inMySQL(expired, "CLOSED") == n && len(s.messagesByKey(topic)) >= n
	})
	ghost, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: fallback.DrainGroup,
		Start: "-", End: "+", Count: n, Consumer: "orderd-dead-replica"}).Result()
	if err != nil || len(ghost) != 0 {
		t.Fatalf("the dead replica's entries were not reclaimed: %d pending (%v)", len(ghost), err)
	}

	halves := s.halvesByKey()
	for _, id := range spilled {
		if halves[id] != 1 {
			t.Errorf("spilled order %s: %d half messages, want 1 (placed once)", id, halves[id])
		}
	}
	events := s.messagesByKey(topic)
	for _, id := range paid {
		if events[id] != 1 {
			t.Errorf("paid order %s republished %d times, want 1", id, events[id])
		}
	}
	if len(events) != n {
		t.Errorf("%d keys on %s, want the %d republished orders only", len(events), topic, n)
	}
	closed, closedSum := shares(t, ms, "txorder_closer_closed_total")
	if closedSum != n {
		t.Errorf("closers counted %v closes (sum %v), want %d: each order closed once", closed, closedSum, n)
	}
	drained, drainedSum := shares(t, ms, "txorder_spill_drained_total")
	if drainedSum != n {
		t.Errorf("drainers counted %v (sum %v), want %d: each entry placed once", drained, drainedSum, n)
	}
	republished, _ := shares(t, ms, "txorder_reconciler_republished_total")
	swept, sweptSum := shares(t, ms, "txorder_tx_cache_inserted_total")
	t.Logf("shares per replica: closer %v, drainer %v, reconciler %v, cache sweeper %v (sum %v for %d orders: a sweep that finds the row already written counts too)",
		closed, drained, republished, swept, sweptSum, n)
	var brokersUsed []string
	for _, b := range s.allBrokers() {
		brokersUsed = append(brokersUsed, fmt.Sprint(len(b.Messages(rmqtest.HalfTopic))))
	}
	t.Logf("half message copies per broker group (each check re-puts one): %s", strings.Join(brokersUsed, ", "))
}
