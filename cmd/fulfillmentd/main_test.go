package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
)

var sharedMySQL *testenv.MySQLServer

func TestMain(m *testing.M) {
	// The real rocketmq-client-go has data races of its own; ignore only
	// those (see rmqtest.ClientRaceSuppressions).
	rmqtest.SuppressClientRaces()
	os.Exit(testenv.RunMain(m, &sharedMySQL, nil))
}

const topic = "ORDER_PAID"

// stack is fulfillmentd's world for one test: rmqtest with millisecond
// retry delays, a fresh database, and the configuration fulfillmentd loads
// through the same loader production uses.
type stack struct {
	t   *testing.T
	mq  *rmqtest.Server
	cfg configs.Fulfillmentd
	db  *sql.DB
	env []string // TXORDER_FULFILLMENT__* for a subprocess
	px  *proxies // with newStackWith
}

func newStack(t *testing.T) *stack { return newStackWith(t, nil) }

// newStackWith builds a stack; with px, fulfillmentd reaches MySQL and the
// broker through fault proxies (the test's own db does not).
func newStackWith(t *testing.T, px *proxies) *stack {
	t.Helper()
	s := &stack{t: t, px: px}
	opts := rmqtest.Options{DelayScale: 0.001, Topics: map[string]int{topic: 4}}
	if px != nil {
		px.broker = faultproxy.Start(t, "broker", "127.0.0.1:1")
		opts.BrokerAdvertiseAddr = px.broker.Addr()
	}
	s.mq = rmqtest.RunT(t, opts)
	dsn, err := mysql.ParseDSN(sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	mysqlAddr := dsn.Addr
	if px != nil {
		if err := px.broker.SetUpstream(s.mq.BrokerAddr()); err != nil {
			t.Fatal(err)
		}
		px.mysql = faultproxy.Start(t, "mysql", dsn.Addr)
		mysqlAddr = px.mysql.Addr()
	}
	p := configs.FulfillmentEnvPrefix
	s.env = []string{
		p + "HTTP__ADDR=127.0.0.1:0",
		p + "MYSQL__ADDR=" + mysqlAddr,
		p + "MYSQL__USER=" + dsn.User,
		p + "MYSQL__PASSWORD=" + dsn.Passwd,
		p + "MYSQL__DATABASE=" + dsn.DBName,
		p + "MYSQL__TIMEOUT=2s",
		p + "ROCKETMQ__NAME_SERVERS=" + s.mq.NameServerAddr(),
		p + "ROCKETMQ__INSTANCE_NAME=fulfillmentd-" + uuid.NewString()[:8],
		p + "ROCKETMQ__MAX_RECONSUME_TIMES=3",
		p + "ROCKETMQ__CONSUME_GOROUTINES=8",
		p + "DEAD_LETTER__RETRY_INTERVAL=100ms",
		p + "HTTP__SHUTDOWN_TIMEOUT=10s",
		p + "LOG__LEVEL=debug",
		// orderd's variables in the same environment are ignored.
		"TXORDER_HTTP__ADDR=127.0.0.1:1",
		"TXORDER_AUTH__API_KEYS=demo:not-for-fulfillmentd-0123",
	}
	if px != nil {
		// A fault of a few seconds must not use up the retries of the
		// messages it delays (retry delays are milliseconds here).
		s.env = append(s.env, p+"ROCKETMQ__MAX_RECONSUME_TIMES=16")
	}
	s.cfg, err = configs.LoadFulfillmentd("../../configs/fulfillmentd.yaml", s.env)
	if err != nil {
		t.Fatal(err)
	}
	direct := s.cfg.MySQL
	direct.Addr = dsn.Addr
	s.db, err = sql.Open("mysql", direct.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	return s
}

// fulfillmentd opens a Main on the stack; its log goes to the test log.
func (s *stack) fulfillmentd(hook func(context.Context, order.PaidEvent, int32) error) *Main {
	s.t.Helper()
	m := NewMain(s.cfg, slog.New(slog.NewTextHandler(testenv.LogWriter(s.t), &slog.HandlerOptions{Level: slog.LevelInfo})))
	m.BeforeApply = hook
	if err := m.Open(context.Background()); err != nil {
		_ = m.Close()
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = m.Close() })
	return m
}

func newEvent() order.PaidEvent {
	return order.PaidEvent{OrderID: uuid.Must(uuid.NewV7()), CustomerID: "c-1", Currency: "EUR", Total: 100,
		Items:    []order.Item{{SKU: "S", Name: "Widget", Quantity: 1, UnitPrice: 100}},
		PlacedAt: time.Now().UTC()}
}

// publish puts an ORDER_PAID for ev on the topic, as the broker would after
// a commit (or as the reconciler's plain send would).
func (s *stack) publish(ev order.PaidEvent) {
	s.t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		s.t.Fatal(err)
	}
	s.publishRaw(ev.OrderID.String(), body)
}

func (s *stack) publishRaw(key string, body []byte) rmqtest.Message {
	s.t.Helper()
	qid := int(key[len(key)-1]) % 4
	m, err := s.mq.Publish(topic, qid, body, map[string]string{"KEYS": key})
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

func (s *stack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.db.QueryRow(query, args...).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

func (s *stack) shipments(id uuid.UUID) int {
	return s.count(`SELECT COUNT(*) FROM shipments WHERE order_id = ?`, id.String())
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestConsumesOnceAndParksMalformed: paid events are applied once each,
// an event delivered twice (the reconciler's duplicate) gives one
// shipment, and a malformed body becomes a dead letter with its reason
// without any retry.
func TestConsumesOnceAndParksMalformed(t *testing.T) {
	s := newStack(t)
	m := s.fulfillmentd(nil)
	events := make([]order.PaidEvent, 20)
	for i := range events {
		events[i] = newEvent()
		s.publish(events[i])
	}
	s.publish(events[0]) // the same ORDER_PAID again, as a new message
	bad := s.publishRaw("not-an-order", []byte(`{"order_id":"nope"`))

	waitFor(t, 15*time.Second, "every event applied and the malformed one parked", func() bool {
		return s.count(`SELECT COUNT(*) FROM shipments`) >= len(events) &&
			s.count(`SELECT COUNT(*) FROM dead_letters`) == 1 &&
			s.count(`SELECT COUNT(*) FROM consumed_messages`) == len(events)
	})
	// Wait for the duplicate to be seen, then compare.
	waitFor(t, 10*time.Second, "the duplicate delivery", func() bool {
		_, body := get(t, "http://"+m.Addr()+"/metrics")
		return metric(body, "txorder_fulfillment_duplicates_total") >= 1
	})
	for i, ev := range events {
		if n := s.shipments(ev.OrderID); n != 1 {
			t.Errorf("order %d: %d shipments, want 1", i, n)
		}
	}
	var reason, origID string
	if err := s.db.QueryRow(`SELECT reason, original_msg_id FROM dead_letters`).Scan(&reason, &origID); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reason, "malformed ORDER_PAID: decode ORDER_PAID body") || origID != bad.Properties["UNIQ_KEY"] {
		t.Fatalf("dead letter reason %q id %s, want a decode error for %s", reason, origID, bad.Properties["UNIQ_KEY"])
	}
	if n := len(s.mq.Messages("%RETRY%fulfillment")); n != 0 {
		t.Fatalf("%d messages went to the retry topic; the malformed one must not be retried", n)
	}
	if n := len(s.mq.Messages(listener.DLQTopic("fulfillment"))); n != 0 {
		t.Fatalf("%d messages in the DLQ", n)
	}

	code, body := get(t, "http://"+m.Addr()+"/healthz")
	if code != 200 {
		t.Fatalf("healthz = %d %s", code, body)
	}
	code, body = get(t, "http://"+m.Addr()+"/readyz")
	if code != 200 || !strings.Contains(body, `"mysql":{"status":"up"}`) || !strings.Contains(body, `"rocketmq":{"status":"up"}`) {
		t.Fatalf("readyz = %d %s", code, body)
	}
	_, body = get(t, "http://"+m.Addr()+"/metrics")
	for _, want := range []string{
		"txorder_fulfillment_applied_total 20",
		`txorder_fulfillment_dead_letters_total{source="malformed"} 1`,
		"txorder_fulfillment_retries_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// metric returns the value of an unlabelled metric in a scrape, or -1.
func metric(scrape, name string) float64 {
	for _, line := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// climbs reports whether attempts start at 0, never go down, and pass
// through every reconsume count up to last (a rebalance may repeat one).
func climbs(attempts []int32, last int32) bool {
	if len(attempts) == 0 || attempts[0] != 0 || attempts[len(attempts)-1] != last {
		return false
	}
	for i := 1; i < len(attempts); i++ {
		if d := attempts[i] - attempts[i-1]; d < 0 || d > 1 {
			return false
		}
	}
	return true
}

// hookRecorder fails chosen orders and records the reconsume count of
// every attempt.
type hookRecorder struct {
	mu       sync.Mutex
	attempts map[uuid.UUID][]int32
	failFor  map[uuid.UUID]int32 // fail while reconsumeTimes < n; -1: always
}

func (h *hookRecorder) hook(_ context.Context, ev order.PaidEvent, n int32) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts[ev.OrderID] = append(h.attempts[ev.OrderID], n)
	if limit, ok := h.failFor[ev.OrderID]; ok && (limit < 0 || n < limit) {
		return fmt.Errorf("injected failure %d for order %s", len(h.attempts[ev.OrderID]), ev.OrderID)
	}
	return nil
}

func (h *hookRecorder) seen(id uuid.UUID) []int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int32(nil), h.attempts[id]...)
}

// TestRetriesThenDeadLetters: an order failing twice is retried with
// increasing reconsume counts and applied once; one that always fails
// lands in %DLQ%fulfillment after max_reconsume_times, is recorded once,
// and `ordertool dlq replay` applies it once after the cause is removed.
func TestRetriesThenDeadLetters(t *testing.T) {
	s := newStack(t)
	flaky, doomed, fine := newEvent(), newEvent(), newEvent()
	h := &hookRecorder{attempts: map[uuid.UUID][]int32{}, failFor: map[uuid.UUID]int32{flaky.OrderID: 2, doomed.OrderID: -1}}
	m := s.fulfillmentd(h.hook)
	s.publish(flaky)
	s.publish(doomed)
	s.publish(fine)

	waitFor(t, 20*time.Second, "the flaky order applied", func() bool { return s.shipments(flaky.OrderID) == 1 })
	if got := h.seen(flaky.OrderID); !climbs(got, 2) {
		t.Fatalf("flaky order attempts with reconsume times %v, want 0, 1, 2", got)
	}
	waitFor(t, 20*time.Second, "the doomed order in the DLQ and recorded", func() bool {
		return len(s.mq.Messages(listener.DLQTopic("fulfillment"))) == 1 &&
			s.count(`SELECT COUNT(*) FROM dead_letters`) == 1
	})
	if got := h.seen(doomed.OrderID); !climbs(got, 3) {
		t.Fatalf("doomed order attempts %v, want 0, 1, 2, 3 (max_reconsume_times 3)", got)
	}
	var key, reason string
	var times int
	if err := s.db.QueryRow(`SELECT msg_key, reason, reconsume_times FROM dead_letters`).Scan(&key, &reason, &times); err != nil {
		t.Fatal(err)
	}
	if key != doomed.OrderID.String() || !strings.Contains(reason, "last error: apply order "+doomed.OrderID.String()+": injected failure") || times != 4 {
		t.Fatalf("dead letter key %s times %d reason %q", key, times, reason)
	}
	if n := s.shipments(doomed.OrderID); n != 0 {
		t.Fatalf("doomed order has %d shipments", n)
	}
	if n := s.shipments(fine.OrderID); n != 1 {
		t.Fatalf("fine order has %d shipments", n)
	}
	_, body := get(t, "http://"+m.Addr()+"/readyz")
	if !strings.Contains(body, `"dead_letter":{"status":"up"}`) {
		t.Fatalf("readyz = %s, want the recorder subscribed", body)
	}

	// The cause is removed (in ordertool's process the hook does not
	// exist); the operator replays.
	out := runOrdertool(t, s.env, "dlq", "replay", "--all", "--config", "../../configs/fulfillmentd.yaml")
	if !strings.Contains(out, "applied") {
		t.Fatalf("ordertool dlq replay: %s", out)
	}
	if n := s.shipments(doomed.OrderID); n != 1 {
		t.Fatalf("after replay the doomed order has %d shipments, want 1", n)
	}
	if n := s.count(`SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NOT NULL`); n != 1 {
		t.Fatalf("%d dead letters marked replayed, want 1", n)
	}
	// Replaying it again (by id) changes nothing.
	var id int64
	_ = s.db.QueryRow(`SELECT id FROM dead_letters`).Scan(&id)
	out = runOrdertool(t, s.env, "dlq", "replay", fmt.Sprint(id), "--config", "../../configs/fulfillmentd.yaml")
	if !strings.Contains(out, "already applied") || s.shipments(doomed.OrderID) != 1 {
		t.Fatalf("second replay: %s, shipments %d", out, s.shipments(doomed.OrderID))
	}
}

// TestGracefulShutdownWaitsForHandler: Close waits for a handler that is
// in the middle of its work; the order is applied once, also after a
// restart.
func TestGracefulShutdownWaitsForHandler(t *testing.T) {
	s := newStack(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	m := s.fulfillmentd(func(context.Context, order.PaidEvent, int32) error {
		once.Do(func() { close(entered) })
		<-release
		return nil
	})
	ev := newEvent()
	s.publish(ev)
	select {
	case <-entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the handler never ran")
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was running", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return after the handler finished")
	}
	if n := s.shipments(ev.OrderID); n != 1 {
		t.Fatalf("shipments = %d, want 1", n)
	}
	s.fulfillmentd(nil)
	s.publish(newEvent())
	waitFor(t, 15*time.Second, "the restarted service to consume", func() bool {
		return s.count(`SELECT COUNT(*) FROM shipments`) == 2
	})
	if n := s.shipments(ev.OrderID); n != 1 {
		t.Fatalf("after restart: shipments = %d, want 1", n)
	}
}
