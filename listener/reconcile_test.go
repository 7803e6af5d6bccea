package listener

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// recordingSender accepts every message and keeps its keys.
type recordingSender struct {
	mu   sync.Mutex
	keys []string
}

func (s *recordingSender) SendSync(_ context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.keys = append(s.keys, m.GetKeys())
	}
	return &primitive.SendResult{Status: primitive.SendOK, MsgID: strconv.Itoa(len(s.keys))}, nil
}

func (s *recordingSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// A backlog larger than one batch is republished within one tick: the
// reconciler runs rounds back to back while they come back full, instead of
// Batch orders per Interval.
func TestReconcilerCatchesUp(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	ctx := context.Background()
	const backlog, batch = 250, 100
	for i := range backlog {
		o := storeDue(t, f, "backlog-"+strconv.Itoa(i), time.Now().Add(-time.Hour))
		if won, err := f.store.Transition(ctx, nil, o.ID, order.StatusPendingPayment, order.StatusPaid, time.Now().Add(-2*time.Hour)); err != nil || !won {
			t.Fatalf("pay %s: %v %v", o.ID, won, err)
		}
	}
	sender := &recordingSender{}
	r, err := NewReconciler(f.store, sender, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReconcilerConfig{Topic: "ORDER_PAID", Grace: time.Minute, Interval: time.Hour, Batch: batch, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	// The next tick is an hour away: only the catch-up can publish more
	// than the first batch.
	waitFor(t, 60*time.Second, "the whole backlog republished", func() bool { return sender.count() >= backlog })
	var unpublished int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders WHERE status = 'PAID' AND published_at IS NULL`).Scan(&unpublished); err != nil {
		t.Fatal(err)
	}
	if unpublished != 0 || sender.count() != backlog {
		t.Fatalf("after one tick: %d sent, %d still unpublished; want %d sent, 0 left", sender.count(), unpublished, backlog)
	}
}

// Payments that were recorded but not applied are counted for the operators:
// REFUND_REQUIRED (order already paid) and AMOUNT_MISMATCH (the order is
// unchanged, the captured money must still be refunded).
func TestReconcilerCountsUnappliedPayments(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	ctx := context.Background()
	svc, err := payment.NewService(f.store, slog.New(slog.NewTextHandler(io.Discard, nil)), payment.Config{WebhookSecret: "test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	o := storeDue(t, f, "unapplied", time.Now().Add(time.Hour))
	notify := func(txn string, amount int64) error {
		_, err := svc.Notify(ctx, payment.Notification{ProviderTxnID: txn, OrderID: o.ID, Amount: amount, Currency: o.Currency})
		return err
	}
	if err := notify("mismatch-1", o.Total+1); !errors.Is(err, payment.ErrAmountMismatch) {
		t.Fatalf("wrong amount: %v, want ErrAmountMismatch", err)
	}
	if err := notify("mismatch-2", o.Total-1); !errors.Is(err, payment.ErrAmountMismatch) {
		t.Fatalf("wrong amount: %v, want ErrAmountMismatch", err)
	}
	if err := notify("applied", o.Total); err != nil {
		t.Fatalf("right amount: %v", err)
	}
	if err := notify("twice", o.Total); !errors.Is(err, payment.ErrAlreadyPaid) {
		t.Fatalf("second payment: %v, want ErrAlreadyPaid", err)
	}
	reg := prometheus.NewRegistry()
	r, err := NewReconciler(f.store, &recordingSender{}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReconcilerConfig{Topic: "ORDER_PAID", Grace: time.Hour, Interval: time.Hour, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if g := mf.GetMetric()[0].GetGauge(); g != nil {
			got[mf.GetName()] = g.GetValue()
		}
	}
	if got["txorder_reconciler_amount_mismatches"] != 2 || got["txorder_reconciler_refunds_required"] != 1 {
		t.Errorf("gauges = %v, want amount_mismatches 2 and refunds_required 1", got)
	}
}
