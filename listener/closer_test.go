package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

const closerGrace = time.Minute

// newTestCloser returns a Closer on store with the fixture's clock and a
// one-minute grace, logging to log (nil: discarded).
func newTestCloser(t *testing.T, f *fixture, store *order.Store, log io.Writer, batch int) *Closer {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	c, err := NewCloser(store, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(log, nil)), CloserConfig{
		Grace: closerGrace, Interval: time.Hour, Batch: batch, Timeout: 5 * time.Second,
		Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// storeDue stores a PENDING_PAYMENT order with the given deadline.
func storeDue(t *testing.T, f *fixture, key string, deadline time.Time) *order.Order {
	t.Helper()
	o := f.newOrder(key)
	o.PaymentDeadline = deadline.UTC().Truncate(time.Microsecond)
	if err := f.store.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o
}

// The closer closes pending orders past deadline + grace and nothing else;
// a check-back that comes afterwards answers ROLLBACK.
func TestCloserClosesOrphans(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	ctx := context.Background()
	var log syncBuffer
	c := newTestCloser(t, f, f.store, &log, 100)
	orphan := storeDue(t, f, "orphan", f.now.Add(-closerGrace-time.Second))
	inGrace := storeDue(t, f, "in-grace", f.now.Add(-closerGrace+time.Second))
	open := storeDue(t, f, "open", f.now.Add(time.Minute))
	paid := storeDue(t, f, "paid", f.now.Add(-time.Hour))
	if won, err := f.store.Transition(ctx, nil, paid.ID, order.StatusPendingPayment, order.StatusPaid, f.now.Add(-2*time.Hour)); err != nil || !won {
		t.Fatalf("pay = %v, %v", won, err)
	}

	n, err := c.RunOnce(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RunOnce = %d, %v; want the orphan closed", n, err)
	}
	want := map[*order.Order]order.Status{orphan: order.StatusClosed, inGrace: order.StatusPendingPayment,
		open: order.StatusPendingPayment, paid: order.StatusPaid}
	for o, st := range want {
		if got := f.status(t, o.ID); got != st {
			t.Errorf("order %s = %s, want %s", o.IdempotencyKey, got, st)
		}
	}
	if v := counterValue(c.closed); v != 1 {
		t.Errorf("txorder_closer_closed_total = %v, want 1", v)
	}
	if got := log.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "check-back never came") ||
		!strings.Contains(got, "count=1") {
		t.Errorf("log = %q, want a warning with the count", got)
	}
	// §4.2: a check-back that still comes for the closed order rolls back;
	// the paid one is committed.
	if got := f.check(orphan.ID.String()); got != primitive.RollbackMessageState {
		t.Errorf("check-back of the closed order = %s, want rollback", stateName(got))
	}
	if got := f.check(paid.ID.String()); got != primitive.CommitMessageState {
		t.Errorf("check-back of the paid order = %s, want commit", stateName(got))
	}
	// Nothing left: a quiet round logs nothing.
	before := log.String()
	if n, err := c.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second round = %d, %v; want 0", n, err)
	}
	if log.String() != before {
		t.Errorf("a round that closed nothing logged %q", strings.TrimPrefix(log.String(), before))
	}
}

// Run keeps closing: orders that expire while it runs are closed by a
// later round, and a full batch is followed at once by the next.
func TestCloserRun(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	var now struct {
		sync.Mutex
		t time.Time
	}
	now.t = f.now
	clock := func() time.Time { now.Lock(); defer now.Unlock(); return now.t }
	c, err := NewCloser(f.store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), CloserConfig{
		Grace: closerGrace, Interval: 20 * time.Millisecond, Batch: 2, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	var orders []*order.Order
	for i := range 5 {
		orders = append(orders, storeDue(t, f, fmt.Sprintf("run-%d", i), f.now.Add(-2*closerGrace)))
	}
	later := storeDue(t, f, "later", f.now.Add(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "the five expired orders closed", func() bool {
		for _, o := range orders {
			if f.status(t, o.ID) != order.StatusClosed {
				return false
			}
		}
		return true
	})
	if got := f.status(t, later.ID); got != order.StatusPendingPayment {
		t.Fatalf("order within its window = %s", got)
	}
	now.Lock()
	now.t = now.t.Add(time.Minute + closerGrace + time.Second)
	now.Unlock()
	waitFor(t, 5*time.Second, "the order that expired meanwhile closed", func() bool {
		return f.status(t, later.ID) == order.StatusClosed
	})
	// The rows are CLOSED when the round's transaction commits; the counter
	// moves just after.
	waitFor(t, 5*time.Second, "txorder_closer_closed_total = 6", func() bool { return counterValue(c.closed) == 6 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// Two closers (two replicas, each with its own pool) running at once close
// every order exactly once.
func TestCloserReplicas(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	const orders = 60
	for i := range orders {
		storeDue(t, f, fmt.Sprintf("replica-%d", i), f.now.Add(-closerGrace-time.Duration(i+1)*time.Second))
	}
	other, err := order.NewStore(f.db, order.StoreConfig{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	closers := []*Closer{newTestCloser(t, f, f.store, nil, 5), newTestCloser(t, f, other, nil, 5)}
	counts := make([]int, len(closers))
	errs := make([]error, len(closers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range closers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				n, err := c.RunOnce(context.Background())
				if err != nil {
					errs[i] = err
					return
				}
				counts[i] += n
				if n == 0 { // the rest is locked by the other closer, which closes it
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("closer %d: %v", i, err)
		}
	}
	t.Logf("closed per closer: %v", counts)
	metrics := counterValue(closers[0].closed) + counterValue(closers[1].closed)
	var closed int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders WHERE status = 'CLOSED'`).Scan(&closed); err != nil {
		t.Fatal(err)
	}
	if counts[0]+counts[1] != orders || closed != orders || metrics != orders {
		t.Fatalf("closers reported %v (metrics %v), table has %d closed; want %d closed exactly once",
			counts, metrics, closed, orders)
	}
}

// A payment racing the closer: either the payment wins (PAID, APPLIED, the
// closer closed nothing, the check-back commits) or the closer does
// (CLOSED, the payment is recorded REFUND_REQUIRED, the check-back rolls
// back). Never both, never neither.
func TestCloserRacesPayment(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	c := newTestCloser(t, f, f.store, nil, 100)
	pay, err := payment.NewService(f.store, slog.New(slog.NewTextHandler(io.Discard, nil)), payment.Config{
		WebhookSecret: "whsec-closer-test-0123456789abcdef0123", Timeout: 5 * time.Second,
		Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const rounds = 30
	var paidWins, closerWins int
	for i := range rounds {
		o := storeDue(t, f, fmt.Sprintf("race-%d", i), f.now.Add(-closerGrace-time.Second))
		var (
			wg     sync.WaitGroup
			res    payment.Result
			payErr error
			closed int
			cErr   error
		)
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			res, payErr = pay.Notify(ctx, payment.Notification{ProviderTxnID: "txn-" + o.ID.String(), OrderID: o.ID,
				Amount: o.Total, Currency: o.Currency})
		}()
		go func() {
			defer wg.Done()
			<-start
			closed, cErr = c.RunOnce(ctx)
		}()
		close(start)
		wg.Wait()
		if cErr != nil {
			t.Fatalf("round %d: closer: %v", i, cErr)
		}
		status := f.status(t, o.ID)
		switch {
		case payErr == nil:
			paidWins++
			if status != order.StatusPaid || res.Payment.Status != payment.StatusApplied || closed != 0 {
				t.Fatalf("round %d: payment applied, but order %s, payment %s, closer closed %d", i, status, res.Payment.Status, closed)
			}
			if got := f.check(o.ID.String()); got != primitive.CommitMessageState {
				t.Fatalf("round %d: check-back of the paid order = %s, want commit", i, stateName(got))
			}
		case errors.Is(payErr, payment.ErrOrderClosed):
			closerWins++
			if status != order.StatusClosed || res.Payment.Status != payment.StatusRefundRequired || closed != 1 {
				t.Fatalf("round %d: payment refused, but order %s, payment %s, closer closed %d", i, status, res.Payment.Status, closed)
			}
			if got := f.check(o.ID.String()); got != primitive.RollbackMessageState {
				t.Fatalf("round %d: check-back of the closed order = %s, want rollback", i, stateName(got))
			}
		default:
			t.Fatalf("round %d: payment: %v (order %s, closer closed %d)", i, payErr, status, closed)
		}
		// Whoever lost, the closer has nothing left to do with this order:
		// a paid order is never closed later.
		if n, err := c.RunOnce(ctx); err != nil || n != 0 {
			t.Fatalf("round %d: next round closed %d, %v", i, n, err)
		}
	}
	t.Logf("%d rounds: payment won %d, closer won %d", rounds, paidWins, closerWins)
}
