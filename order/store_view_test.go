package order_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

func newViewStore(t *testing.T, db *sql.DB) *order.Store {
	t.Helper()
	s, err := order.NewStore(db, order.StoreConfig{Timeout: 2 * time.Second,
		StateView: order.StateViewConfig{Enabled: true, Refresh: time.Hour, MaxAge: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pendingOrder(t *testing.T, deadline time.Time) *order.Order {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &order.Order{ID: uuid.Must(uuid.NewV7()), CustomerID: "c", Currency: "EUR",
		Items: []order.Item{{SKU: "S", Name: "n", Quantity: 1, UnitPrice: 100}}, Total: 100,
		Status: order.StatusPendingPayment, PaymentDeadline: deadline.UTC().Truncate(time.Microsecond),
		CreatedAt: now, UpdatedAt: now}
}

// The view answers only "pending", and only for orders it knows as
// pending: paid, closed, absent and foreign orders are MySQL's to answer.
func TestStateViewAnswersOnlyPending(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, sharedMySQL.NewDatabase(t))
	store := newViewStore(t, db)
	other, err := order.NewStore(db, order.StoreConfig{}) // another process, no view
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := store.PendingState(uuid.Must(uuid.NewV7())); ok {
		t.Fatal("PendingState answered before any refresh, want a MySQL read")
	}
	if err := store.RefreshStateView(ctx); err != nil { // full load of an empty table
		t.Fatal(err)
	}
	mine := pendingOrder(t, time.Now().Add(time.Hour))
	if err := store.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	st, ok := store.PendingState(mine.ID)
	if !ok || st.Status != order.StatusPendingPayment || !st.PaymentDeadline.Equal(mine.PaymentDeadline) {
		t.Fatalf("PendingState(created here) = %+v, %v; want pending with its deadline", st, ok)
	}
	foreign := pendingOrder(t, time.Now().Add(time.Hour))
	if err := other.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.PendingState(foreign.ID); ok {
		t.Fatal("PendingState answered for an order created elsewhere before a reload")
	}
	if _, ok := store.PendingState(uuid.Must(uuid.NewV7())); ok {
		t.Fatal("PendingState answered for an absent order")
	}
	// Read-through: a MySQL read of a pending order teaches the view.
	if _, err := store.GetState(ctx, foreign.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.PendingState(foreign.ID); !ok {
		t.Fatal("PendingState after GetState of a pending order = false, want true")
	}
	// Paid through this store: dropped at once.
	if won, err := store.Transition(ctx, nil, mine.ID, order.StatusPendingPayment, order.StatusPaid, time.Now()); err != nil || !won {
		t.Fatalf("Transition = %v, %v", won, err)
	}
	if _, ok := store.PendingState(mine.ID); ok {
		t.Fatal("PendingState answered for an order paid through this store")
	}
	// Paid by another process: stale until the next refresh, then dropped.
	if won, err := other.Transition(ctx, nil, foreign.ID, order.StatusPendingPayment, order.StatusPaid, time.Now()); err != nil || !won {
		t.Fatalf("Transition = %v, %v", won, err)
	}
	if err := store.RefreshStateView(ctx); err != nil { // incremental
		t.Fatal(err)
	}
	if _, ok := store.PendingState(foreign.ID); ok {
		t.Fatal("PendingState answered for an order paid elsewhere after a refresh")
	}
	if got := store.StateViewSize(); got != 0 {
		t.Fatalf("view size = %d, want 0", got)
	}
}

// A full load learns every pending order, and the view stops answering
// when it has not been refreshed for MaxAge.
func TestStateViewFullLoadAndMaxAge(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, sharedMySQL.NewDatabase(t))
	other, err := order.NewStore(db, order.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for i := 0; i < 5; i++ {
		o := pendingOrder(t, time.Now().Add(time.Hour))
		if err := other.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
	}
	closed := pendingOrder(t, time.Now().Add(-time.Minute))
	if err := other.Create(ctx, closed); err != nil {
		t.Fatal(err)
	}
	if won, err := other.Transition(ctx, nil, closed.ID, order.StatusPendingPayment, order.StatusClosed, time.Now()); err != nil || !won {
		t.Fatalf("Transition = %v, %v", won, err)
	}
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 2 * time.Second,
		StateView: order.StateViewConfig{Enabled: true, Refresh: time.Hour, MaxAge: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RefreshStateView(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, ok := store.PendingState(id); !ok {
			t.Fatalf("PendingState(%s) after a full load = false, want true", id)
		}
	}
	if _, ok := store.PendingState(closed.ID); ok {
		t.Fatal("PendingState answered for a closed order")
	}
	if got := store.StateViewSize(); got != len(ids) {
		t.Fatalf("view size = %d, want %d", got, len(ids))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := store.PendingState(ids[0]); !ok {
			break // stale view: MySQL answers again
		}
		if time.Now().After(deadline) {
			t.Fatal("view still answers past MaxAge without a refresh")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkPendingStateVsGetState compares what a check-back of a pending
// order costs with the state view (a map read) and without it (one
// primary-key read over TCP).
func BenchmarkPendingStateVsGetState(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, sharedMySQL.NewDatabase(b))
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 2 * time.Second,
		StateView: order.StateViewConfig{Enabled: true, Refresh: time.Hour, MaxAge: time.Hour}})
	if err != nil {
		b.Fatal(err)
	}
	const k = 1000
	ids := make([]uuid.UUID, k)
	for i := range ids {
		now := time.Now().UTC().Truncate(time.Microsecond)
		o := &order.Order{ID: uuid.Must(uuid.NewV7()), CustomerID: "c", Currency: "EUR",
			Items: []order.Item{{SKU: "S", Name: "n", Quantity: 1, UnitPrice: 100}}, Total: 100,
			Status: order.StatusPendingPayment, PaymentDeadline: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
		if err := store.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
		ids[i] = o.ID
	}
	if err := store.RefreshStateView(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("GetState", func(b *testing.B) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if _, err := store.GetState(ctx, ids[i%k]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
	})
	b.Run("PendingState", func(b *testing.B) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if _, ok := store.PendingState(ids[i%k]); !ok {
				b.Fatal("not in the view")
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
	})
}
