package listener

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

// fulfillmentFixture is a Fulfillment handler on a fresh database.
type fulfillmentFixture struct {
	h       *Fulfillment
	store   *FulfillmentStore
	dead    *DeadLetterStore
	metrics *FulfillmentMetrics
	db      *sql.DB

	mu   sync.Mutex
	fail func(ev order.PaidEvent, reconsumeTimes int32) error
}

func newFulfillmentFixture(t *testing.T, my *testenv.MySQLServer) *fulfillmentFixture {
	t.Helper()
	db, err := sql.Open("mysql", my.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	f := &fulfillmentFixture{db: db, metrics: NewFulfillmentMetrics(prometheus.NewRegistry())}
	if f.store, err = NewFulfillmentStore(db, time.Second); err != nil {
		t.Fatal(err)
	}
	if f.dead, err = NewDeadLetterStore(db, time.Second); err != nil {
		t.Fatal(err)
	}
	f.h, err = NewFulfillment(f.store, f.dead, f.metrics, slog.New(slog.NewTextHandler(io.Discard, nil)), FulfillmentConfig{
		Timeout: time.Second,
		BeforeApply: func(_ context.Context, ev order.PaidEvent, n int32) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail != nil {
				return f.fail(ev, n)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fulfillmentFixture) setFail(fn func(order.PaidEvent, int32) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func paidEvent() order.PaidEvent {
	return order.PaidEvent{OrderID: uuid.Must(uuid.NewV7()), CustomerID: "c-1", Currency: "EUR", Total: 100,
		Items:    []order.Item{{SKU: "S", Name: "Widget", Quantity: 1, UnitPrice: 100}},
		PlacedAt: time.Now().UTC()}
}

// paidMessage is an ORDER_PAID delivery of ev as the client hands it over.
func paidMessage(t *testing.T, ev order.PaidEvent) *primitive.MessageExt {
	t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return rawMessage(ev.OrderID.String(), body)
}

func rawMessage(key string, body []byte) *primitive.MessageExt {
	m := &primitive.MessageExt{Message: primitive.Message{Topic: "ORDER_PAID", Body: body},
		MsgId: strings.ToUpper(strings.ReplaceAll(uuid.NewString(), "-", ""))}
	m.WithKeys([]string{key})
	return m
}

func (f *fulfillmentFixture) shipments(t *testing.T, id uuid.UUID) int {
	t.Helper()
	n, err := f.store.Shipments(context.Background(), id.String())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fulfillmentFixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func consume(t *testing.T, h *Fulfillment, msgs ...*primitive.MessageExt) consumer.ConsumeResult {
	t.Helper()
	res, err := h.Consume(context.Background(), msgs...)
	if err != nil {
		t.Fatalf("Consume returned an error (the result says it all): %v", err)
	}
	return res
}

// TestFulfillmentAppliesOnce: the first delivery creates the shipment; a
// redelivery and the reconciler's duplicate (same key, another message id)
// succeed without a second one.
func TestFulfillmentAppliesOnce(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	ev := paidEvent()
	first := paidMessage(t, ev)
	if res := consume(t, f.h, first); res != consumer.ConsumeSuccess {
		t.Fatalf("first delivery = %v, want success", res)
	}
	if res := consume(t, f.h, first); res != consumer.ConsumeSuccess {
		t.Fatalf("redelivery = %v, want success", res)
	}
	if res := consume(t, f.h, paidMessage(t, ev)); res != consumer.ConsumeSuccess {
		t.Fatalf("duplicate event = %v, want success", res)
	}
	if got := f.shipments(t, ev.OrderID); got != 1 {
		t.Fatalf("shipments = %d, want 1", got)
	}
	var msgID, group string
	if err := f.db.QueryRow(`SELECT msg_id, consumer_group FROM consumed_messages WHERE order_id = ?`, ev.OrderID.String()).Scan(&msgID, &group); err != nil {
		t.Fatal(err)
	}
	if msgID != first.MsgId || group != DefaultFulfillmentGroup {
		t.Fatalf("consumed_messages = (%s, %s), want (%s, %s)", msgID, group, first.MsgId, DefaultFulfillmentGroup)
	}
	if a, d := counterValue(f.metrics.applied), counterValue(f.metrics.duplicates); a != 1 || d != 2 {
		t.Fatalf("metrics applied = %v duplicates = %v, want 1 and 2", a, d)
	}
}

// TestFulfillmentConcurrentDuplicates: deliveries of one order racing in
// separate handlers still create one shipment (the guard row is inserted
// first, so the losers wait on its lock and then hit the key).
func TestFulfillmentConcurrentDuplicates(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	ev := paidEvent()
	var wg sync.WaitGroup
	results := make(chan consumer.ConsumeResult, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _ := f.h.Consume(context.Background(), paidMessage(t, ev))
			results <- res
		}()
	}
	wg.Wait()
	close(results)
	for res := range results {
		if res != consumer.ConsumeSuccess {
			t.Errorf("a concurrent delivery = %v, want success", res)
		}
	}
	if got := f.shipments(t, ev.OrderID); got != 1 {
		t.Fatalf("shipments = %d, want 1", got)
	}
}

// TestFulfillmentMalformed: a body that cannot be decoded is parked as a
// dead letter at once, with the reason, and acknowledged: no retry.
func TestFulfillmentMalformed(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	ev := paidEvent()
	good, _ := json.Marshal(ev)
	noItems, _ := json.Marshal(order.PaidEvent{OrderID: ev.OrderID, Currency: "EUR", Total: 1})
	cases := []struct {
		name, key string
		body      []byte
		reason    string
	}{
		{"not JSON", "k-1", []byte("{not json"), "decode ORDER_PAID body"},
		{"no items", ev.OrderID.String(), noItems, "lacks order_id, currency, total or items"},
		{"key is another order", uuid.NewString(), good, "is not the body's order_id"},
		{"empty body", "k-2", nil, "decode ORDER_PAID body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := rawMessage(tc.key, tc.body)
			m.ReconsumeTimes = 0
			for range 2 { // a redelivery of the same message changes nothing
				if res := consume(t, f.h, m); res != consumer.ConsumeSuccess {
					t.Fatalf("Consume = %v, want success (parked, not retried)", res)
				}
			}
			list, err := f.dead.List(context.Background(), DefaultFulfillmentGroup, false)
			if err != nil {
				t.Fatal(err)
			}
			var found []DeadLetter
			for _, d := range list {
				if d.OriginalMsgID == m.MsgId {
					found = append(found, d)
				}
			}
			if len(found) != 1 {
				t.Fatalf("dead letters for %s = %d, want 1", m.MsgId, len(found))
			}
			d := found[0]
			if !strings.Contains(d.Reason, tc.reason) || !strings.HasPrefix(d.Reason, "malformed ORDER_PAID: ") ||
				d.Key != tc.key || string(d.Body) != string(tc.body) || d.ReplayedAt != nil {
				t.Fatalf("dead letter = %+v, want key %s, the body, and a reason with %q", d, tc.key, tc.reason)
			}
		})
	}
	if n := f.count(t, `SELECT COUNT(*) FROM shipments`); n != 0 {
		t.Fatalf("%d shipments from malformed messages", n)
	}
	if got := counterValue(f.metrics.deadLetters.WithLabelValues(sourceMalformed)); got != float64(len(cases)) {
		t.Fatalf("dead_letters_total{source=malformed} = %v, want %d", got, len(cases))
	}
}

// TestFulfillmentFailureRetriesBatch: a failure retries the whole batch;
// what was applied before it is recognised on redelivery, and the error is
// remembered for the dead letter recorder.
func TestFulfillmentFailureRetriesBatch(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	evs := []order.PaidEvent{paidEvent(), paidEvent(), paidEvent()}
	batch := []*primitive.MessageExt{paidMessage(t, evs[0]), paidMessage(t, evs[1]), paidMessage(t, evs[2])}
	boom := errors.New("warehouse API said 500")
	f.setFail(func(ev order.PaidEvent, _ int32) error {
		if ev.OrderID == evs[1].OrderID {
			return boom
		}
		return nil
	})
	if res := consume(t, f.h, batch...); res != consumer.ConsumeRetryLater {
		t.Fatalf("batch with a failing message = %v, want retry later", res)
	}
	if a, b, c := f.shipments(t, evs[0].OrderID), f.shipments(t, evs[1].OrderID), f.shipments(t, evs[2].OrderID); a != 1 || b != 0 || c != 0 {
		t.Fatalf("shipments = %d %d %d, want 1 0 0 (stopped at the failure)", a, b, c)
	}
	if why, ok := f.h.LastFailure(batch[1].MsgId); !ok || !strings.Contains(why, boom.Error()) {
		t.Fatalf("LastFailure = %q %v, want the hook's error", why, ok)
	}
	f.setFail(nil)
	for _, m := range batch {
		m.ReconsumeTimes = 1
	}
	if res := consume(t, f.h, batch...); res != consumer.ConsumeSuccess {
		t.Fatalf("redelivered batch = %v, want success", res)
	}
	for i, ev := range evs {
		if n := f.shipments(t, ev.OrderID); n != 1 {
			t.Fatalf("order %d: %d shipments, want 1", i, n)
		}
	}
	if r, d := counterValue(f.metrics.retries), counterValue(f.metrics.duplicates); r != 1 || d != 1 {
		t.Fatalf("retries = %v duplicates = %v, want 1 and 1", r, d)
	}
}

// TestFulfillmentMySQLDown: with MySQL gone the handler asks for a retry
// within its timeout, and applies the message once MySQL is back.
func TestFulfillmentMySQLDown(t *testing.T) {
	my := testenv.MySQL(t)
	f := newFulfillmentFixture(t, my)
	ev := paidEvent()
	m := paidMessage(t, ev)
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if res := consume(t, f.h, m); res != consumer.ConsumeRetryLater {
		t.Fatalf("Consume with MySQL down = %v, want retry later", res)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Consume took %s with MySQL down; the timeout is 1s", took)
	}
	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the redelivery to succeed", func() bool {
		res, _ := f.h.Consume(context.Background(), m)
		return res == consumer.ConsumeSuccess
	})
	if n := f.shipments(t, ev.OrderID); n != 1 {
		t.Fatalf("shipments = %d, want 1", n)
	}
}

// TestFulfillmentWaitIdle: WaitIdle returns only after a running handler
// finished.
func TestFulfillmentWaitIdle(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	release := make(chan struct{})
	entered := make(chan struct{})
	f.setFail(func(order.PaidEvent, int32) error {
		close(entered)
		<-release
		return nil
	})
	done := make(chan consumer.ConsumeResult, 1)
	go func() {
		res, _ := f.h.Consume(context.Background(), paidMessage(t, paidEvent()))
		done <- res
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.h.WaitIdle(ctx); err == nil || f.h.InFlight() != 1 {
		t.Fatalf("WaitIdle with a handler running = %v (in flight %d), want a timeout", err, f.h.InFlight())
	}
	close(release)
	if err := f.h.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res != consumer.ConsumeSuccess {
		t.Fatalf("handler = %v", res)
	}
}

// counterValue reads a counter (prometheus/testutil would need another
// module in go.sum).
func counterValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
