package payment_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

const secret = "whsec-test-0123456789abcdef0123456789"

// sharedMySQL starts on first use, so that fuzz workers (which never touch
// MySQL) do not start one each.
var sharedMySQL testenv.LazyMySQL

func shared(t testing.TB) *testenv.MySQLServer { return sharedMySQL.Get(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	sharedMySQL.Stop()
	os.Exit(code)
}

type fixture struct {
	db     *sql.DB
	store  *order.Store
	orders *order.Service
	pay    *payment.Service
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := sql.Open("mysql", shared(t).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, now: time.Now().UTC().Truncate(time.Second)}
	f.store, err = order.NewStore(db, order.StoreConfig{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.orders, err = order.NewService(f.store, order.DirectPlacer{Store: f.store}, order.ServiceConfig{PaymentWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.pay, err = payment.NewService(f.store, slog.New(slog.NewTextHandler(io.Discard, nil)),
		payment.Config{WebhookSecret: secret, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// place stores a PENDING_PAYMENT order of 2 × 1999 + 500 = 4498 EUR.
func (f *fixture) place(t *testing.T) *order.Order {
	t.Helper()
	res, err := f.orders.Place(context.Background(), order.PlaceRequest{ClientID: "demo", IdempotencyKey: uuid.NewString(),
		Order: order.NewOrder{CustomerID: "c-1", Currency: "EUR", Items: []order.NewItem{
			{SKU: "A", Name: "Anvil", Quantity: 2, UnitPrice: 1999}, {SKU: "B", Name: "Bell", Quantity: 1, UnitPrice: 500}}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Order
}

func notification(o *order.Order, txn string) payment.Notification {
	return payment.Notification{ProviderTxnID: txn, OrderID: o.ID, Amount: o.Total, Currency: o.Currency}
}

type paymentRow struct {
	orderID  string
	amount   int64
	currency string
	status   payment.Status
}

func (f *fixture) payments(t *testing.T) map[string]paymentRow {
	t.Helper()
	rows, err := f.db.Query(`SELECT provider_txn_id, order_id, amount, currency, status FROM payments`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]paymentRow{}
	for rows.Next() {
		var txn string
		var r paymentRow
		if err := rows.Scan(&txn, &r.orderID, &r.amount, &r.currency, &r.status); err != nil {
			t.Fatal(err)
		}
		out[txn] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) order(t *testing.T, id uuid.UUID) *order.Order {
	t.Helper()
	o, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestNotifyApplies(t *testing.T) {
	f := newFixture(t)
	o := f.place(t)
	res, err := f.pay.Notify(context.Background(), notification(o, "tx-1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed || !res.MarkedPaid || res.OrderStatus != order.StatusPaid || res.Payment.Status != payment.StatusApplied ||
		res.Payment.Outcome != payment.OutcomeApplied || res.Payment.ID == 0 || !res.Payment.ReceivedAt.Equal(f.now) {
		t.Fatalf("result = %+v, want a new APPLIED payment and a PAID order", res)
	}
	got := f.order(t, o.ID)
	if got.Status != order.StatusPaid || got.PaidAt == nil || !got.PaidAt.Equal(f.now) || got.ClosedAt != nil {
		t.Fatalf("order = %s paid_at %v closed_at %v, want PAID at %s", got.Status, got.PaidAt, got.ClosedAt, f.now)
	}
	if rows := f.payments(t); len(rows) != 1 || rows["tx-1"].status != payment.StatusApplied {
		t.Fatalf("payments = %+v, want tx-1 APPLIED", rows)
	}
}

func TestNotifyReplay(t *testing.T) {
	f := newFixture(t)
	o := f.place(t)
	first, err := f.pay.Notify(context.Background(), notification(o, "tx-1"))
	if err != nil {
		t.Fatal(err)
	}
	paidAt := f.order(t, o.ID).PaidAt
	f.now = f.now.Add(time.Minute)
	// The same notification again is the stored payment: nothing changes.
	again, err := f.pay.Notify(context.Background(), notification(o, "tx-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.MarkedPaid || again.Payment != first.Payment || again.OrderStatus != order.StatusPaid {
		t.Fatalf("replay = %+v, want the stored %+v", again, first.Payment)
	}
	// Another body under the same provider transaction is not a replay:
	// ErrTxnReused with the stored payment, nothing applied.
	for _, n := range []payment.Notification{
		{ProviderTxnID: "tx-1", OrderID: o.ID, Amount: 1, Currency: "USD"},
		{ProviderTxnID: "tx-1", OrderID: uuid.Must(uuid.NewV7()), Amount: o.Total, Currency: "EUR"},
	} {
		res, err := f.pay.Notify(context.Background(), n)
		if !errors.Is(err, payment.ErrTxnReused) || res.Payment != first.Payment || res.MarkedPaid {
			t.Fatalf("reuse %+v = %+v, %v; want ErrTxnReused with the stored %+v", n, res, err, first.Payment)
		}
	}
	if rows := f.payments(t); len(rows) != 1 || rows["tx-1"] != (paymentRow{o.ID.String(), o.Total, "EUR", payment.StatusApplied}) {
		t.Fatalf("payments = %+v, want only tx-1 APPLIED", rows)
	}
	if got := f.order(t, o.ID); got.Status != order.StatusPaid || !got.PaidAt.Equal(*paidAt) {
		t.Fatalf("order = %s paid_at %v, want PAID at %v unchanged", got.Status, got.PaidAt, paidAt)
	}
}

// TestNotifyConcurrentDeliveries: the provider delivers the same
// transaction several times at once; one applies it, the others replay.
func TestNotifyConcurrentDeliveries(t *testing.T) {
	f := newFixture(t)
	o := f.place(t)
	const n = 8
	results := make([]payment.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = f.pay.Notify(context.Background(), notification(o, "tx-same"))
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if !results[i].Replayed {
			fresh++
		}
		if results[i].MarkedPaid == results[i].Replayed {
			t.Fatalf("delivery %d: MarkedPaid %v with Replayed %v", i, results[i].MarkedPaid, results[i].Replayed)
		}
		if results[i].Payment.Status != payment.StatusApplied || results[i].OrderStatus != order.StatusPaid {
			t.Fatalf("delivery %d = %+v", i, results[i])
		}
	}
	if fresh != 1 {
		t.Fatalf("%d deliveries applied the payment, want 1", fresh)
	}
	if rows := f.payments(t); len(rows) != 1 {
		t.Fatalf("payments = %+v, want one row", rows)
	}
}

func TestNotifyMismatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mutate   func(*payment.Notification)
		amount   int64
		currency string
	}{
		{"amount short", func(n *payment.Notification) { n.Amount-- }, 4497, "EUR"},
		{"amount over", func(n *payment.Notification) { n.Amount++ }, 4499, "EUR"},
		{"currency", func(n *payment.Notification) { n.Currency = "USD" }, 4498, "USD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.place(t)
			n := notification(o, "tx-1")
			tc.mutate(&n)
			res, err := f.pay.Notify(context.Background(), n)
			if !errors.Is(err, payment.ErrAmountMismatch) {
				t.Fatalf("err = %v, want ErrAmountMismatch", err)
			}
			if res.Payment.Status != payment.StatusAmountMismatch || res.OrderStatus != order.StatusPendingPayment || res.Payment.ID == 0 {
				t.Fatalf("result = %+v", res)
			}
			want := paymentRow{o.ID.String(), tc.amount, tc.currency, payment.StatusAmountMismatch}
			if rows := f.payments(t); len(rows) != 1 || rows["tx-1"] != want {
				t.Fatalf("payments = %+v, want tx-1 %+v", rows, want)
			}
			if got := f.order(t, o.ID); got.Status != order.StatusPendingPayment || got.PaidAt != nil {
				t.Fatalf("order = %s, want PENDING_PAYMENT untouched", got.Status)
			}
			// A correct payment under a new provider transaction still applies.
			if res, err := f.pay.Notify(context.Background(), notification(o, "tx-2")); err != nil || res.OrderStatus != order.StatusPaid {
				t.Fatalf("correct payment after a mismatch = %+v, %v", res, err)
			}
			// The mismatched one replays as it was first answered.
			again, againErr := f.pay.Notify(context.Background(), n)
			if !errors.Is(againErr, payment.ErrAmountMismatch) || againErr.Error() != err.Error() || !again.Replayed ||
				again.Payment != res.Payment {
				t.Fatalf("replay of the mismatch = %+v, %v; want %+v, %v", again, againErr, res.Payment, err)
			}
		})
	}
}

func TestNotifyUnknownOrder(t *testing.T) {
	f := newFixture(t)
	n := payment.Notification{ProviderTxnID: "tx-1", OrderID: uuid.Must(uuid.NewV7()), Amount: 100, Currency: "EUR"}
	if _, err := f.pay.Notify(context.Background(), n); !errors.Is(err, payment.ErrOrderNotFound) {
		t.Fatalf("err = %v, want ErrOrderNotFound", err)
	}
	if rows := f.payments(t); len(rows) != 0 {
		t.Fatalf("payments = %+v, want none recorded", rows)
	}
}

func TestNotifyClosedOrder(t *testing.T) {
	f := newFixture(t)
	o := f.place(t)
	if won, err := f.store.Transition(context.Background(), nil, o.ID, order.StatusPendingPayment, order.StatusClosed, f.now); err != nil || !won {
		t.Fatalf("close: %v %v", won, err)
	}
	res, err := f.pay.Notify(context.Background(), notification(o, "tx-late"))
	if !errors.Is(err, payment.ErrOrderClosed) || !errors.Is(err, payment.ErrRefundRequired) {
		t.Fatalf("err = %v, want ErrOrderClosed (ErrRefundRequired)", err)
	}
	if res.Payment.Status != payment.StatusRefundRequired || res.OrderStatus != order.StatusClosed {
		t.Fatalf("result = %+v", res)
	}
	if rows := f.payments(t); len(rows) != 1 || rows["tx-late"].status != payment.StatusRefundRequired {
		t.Fatalf("payments = %+v, want tx-late REFUND_REQUIRED", rows)
	}
	if got := f.order(t, o.ID); got.Status != order.StatusClosed || got.PaidAt != nil {
		t.Fatalf("order = %s paid_at %v, want CLOSED", got.Status, got.PaidAt)
	}
}

func TestNotifyDoublePayment(t *testing.T) {
	f := newFixture(t)
	o := f.place(t)
	if _, err := f.pay.Notify(context.Background(), notification(o, "tx-1")); err != nil {
		t.Fatal(err)
	}
	paidAt := f.order(t, o.ID).PaidAt
	f.now = f.now.Add(time.Second)
	res, err := f.pay.Notify(context.Background(), notification(o, "tx-2"))
	if !errors.Is(err, payment.ErrAlreadyPaid) || !errors.Is(err, payment.ErrRefundRequired) {
		t.Fatalf("err = %v, want ErrAlreadyPaid (ErrRefundRequired)", err)
	}
	if res.Payment.Status != payment.StatusRefundRequired || res.OrderStatus != order.StatusPaid {
		t.Fatalf("result = %+v", res)
	}
	rows := f.payments(t)
	if len(rows) != 2 || rows["tx-1"].status != payment.StatusApplied || rows["tx-2"].status != payment.StatusRefundRequired {
		t.Fatalf("payments = %+v, want tx-1 APPLIED and tx-2 REFUND_REQUIRED", rows)
	}
	if got := f.order(t, o.ID); !got.PaidAt.Equal(*paidAt) {
		t.Fatalf("paid_at moved from %v to %v", paidAt, got.PaidAt)
	}
}

// TestNotifyRacesDeadlineCloser runs a payment against the check-back's
// compare-and-set close of the same order, many times: each round ends
// PAID with an APPLIED payment or CLOSED with a REFUND_REQUIRED one.
func TestNotifyRacesDeadlineCloser(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var paidWins, closedWins, payRetries, closeRetries int
	warmUp := f.place(t)
	began := time.Now()
	if _, err := f.pay.Notify(ctx, notification(warmUp, "warm-up")); err != nil {
		t.Fatal(err)
	}
	payTime := time.Since(began)
	for round := range 40 {
		o := f.place(t)
		var wg sync.WaitGroup
		var res payment.Result
		var payErr, closeErr error
		var closed bool
		start := make(chan struct{})
		wg.Add(2)
		// Either side may be chosen as a deadlock victim by InnoDB
		// (ErrUnavailable); like the provider and the next check-back, it
		// then tries again, and the final state must still be consistent.
		go func() {
			defer wg.Done()
			<-start
			for attempt := 0; ; attempt++ {
				res, payErr = f.pay.Notify(ctx, notification(o, fmt.Sprintf("race-%d", round)))
				if !errors.Is(payErr, order.ErrUnavailable) || attempt == 3 {
					return
				}
				payRetries++
			}
		}()
		// The closer's single UPDATE is quicker than the payment's
		// transaction: a random head start for the payment, up to the time
		// one payment takes, spreads the interleavings so that both
		// outcomes are common. It is jitter, not a wait for anything.
		jitter := time.Duration(rand.Int64N(int64(payTime) + 1))
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(jitter)
			for attempt := 0; ; attempt++ {
				closed, closeErr = f.store.Transition(ctx, nil, o.ID, order.StatusPendingPayment, order.StatusClosed, time.Now())
				if !errors.Is(closeErr, order.ErrUnavailable) || attempt == 3 {
					return
				}
				closeRetries++
			}
		}()
		close(start)
		wg.Wait()
		if closeErr != nil {
			t.Fatalf("round %d: close: %v", round, closeErr)
		}
		got := f.order(t, o.ID)
		row := f.payments(t)[fmt.Sprintf("race-%d", round)]
		switch {
		case got.Status == order.StatusPaid && !closed && payErr == nil && res.Payment.Status == payment.StatusApplied &&
			row.status == payment.StatusApplied && got.PaidAt != nil && got.ClosedAt == nil:
			paidWins++
		case got.Status == order.StatusClosed && closed && errors.Is(payErr, payment.ErrOrderClosed) &&
			res.Payment.Status == payment.StatusRefundRequired && row.status == payment.StatusRefundRequired &&
			got.PaidAt == nil && got.ClosedAt != nil:
			closedWins++
		default:
			t.Fatalf("round %d: order %s (paid_at %v, closed_at %v), close won=%v, payment %+v err %v, row %+v",
				round, got.Status, got.PaidAt, got.ClosedAt, closed, res, payErr, row)
		}
	}
	t.Logf("payment won %d rounds, the closer %d; retried after a deadlock: payment %d, closer %d",
		paidWins, closedWins, payRetries, closeRetries)
}

func TestNotifyRejectsInvalid(t *testing.T) {
	f := newFixture(t)
	o := f.place(t)
	n := notification(o, "")
	if _, err := f.pay.Notify(context.Background(), n); !errors.Is(err, payment.ErrInvalidNotification) {
		t.Fatalf("err = %v, want ErrInvalidNotification", err)
	}
	if rows := f.payments(t); len(rows) != 0 {
		t.Fatalf("payments = %+v", rows)
	}
}

func TestNewServiceConfig(t *testing.T) {
	db, err := sql.Open("mysql", "u:p@tcp(127.0.0.1:1)/x")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := order.NewStore(db, order.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := payment.NewService(store, logger, payment.Config{}); err == nil {
		t.Fatal("no secret accepted")
	}
	if _, err := payment.NewService(nil, logger, payment.Config{WebhookSecret: secret}); err == nil {
		t.Fatal("nil store accepted")
	}
	if _, err := payment.NewService(store, logger, payment.Config{WebhookSecret: secret}); err != nil {
		t.Fatal(err)
	}
}
