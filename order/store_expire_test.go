package order_test

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// expireFixture is a migrated database with a store whose state view is on
// and trusted, and a clock truncated to what DATETIME(6) keeps.
type expireFixture struct {
	dsn   string
	db    *sql.DB
	store *order.Store
	now   time.Time
}

func newExpireFixture(t *testing.T) *expireFixture {
	t.Helper()
	dsn := sharedMySQL.NewDatabase(t)
	db := openDB(t, dsn)
	f := &expireFixture{dsn: dsn, db: db, store: newViewStore(t, db), now: time.Now().UTC().Truncate(time.Microsecond)}
	if err := f.store.RefreshStateView(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

// create stores a PENDING_PAYMENT order with the given deadline.
func (f *expireFixture) create(t *testing.T, deadline time.Time) *order.Order {
	t.Helper()
	o := pendingOrder(t, deadline)
	if err := f.store.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o
}

func (f *expireFixture) get(t *testing.T, id uuid.UUID) *order.Order {
	t.Helper()
	o, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return o
}

func TestCloseExpired(t *testing.T) {
	f := newExpireFixture(t)
	ctx := context.Background()
	cutoff := f.now.Add(-time.Minute) // a grace of one minute
	expired := f.create(t, f.now.Add(-10*time.Minute))
	expired2 := f.create(t, f.now.Add(-5*time.Minute))
	inGrace := f.create(t, f.now.Add(-time.Second)) // past its deadline, but within the grace
	future := f.create(t, f.now.Add(time.Hour))
	paid := f.create(t, f.now.Add(-10*time.Minute))
	paidAt := f.now.Add(-9 * time.Minute)
	if won, err := f.store.Transition(ctx, nil, paid.ID, order.StatusPendingPayment, order.StatusPaid, paidAt); err != nil || !won {
		t.Fatalf("pay = %v, %v", won, err)
	}
	if _, ok := f.store.PendingState(expired.ID); !ok {
		t.Fatal("the state view does not know the expired order as pending before the close")
	}

	closed, err := f.store.CloseExpired(ctx, cutoff, 100, f.now)
	if err != nil || len(closed) != 2 || !slices.Contains(closed, expired.ID) || !slices.Contains(closed, expired2.ID) {
		t.Fatalf("CloseExpired = %v, %v; want %s and %s closed", closed, err, expired.ID, expired2.ID)
	}
	for _, o := range []*order.Order{expired, expired2} {
		got := f.get(t, o.ID)
		if got.Status != order.StatusClosed || got.ClosedAt == nil || !got.ClosedAt.Equal(f.now) ||
			got.PaidAt != nil || !got.UpdatedAt.Equal(f.now) {
			t.Errorf("expired order = %s closed_at=%v paid_at=%v updated_at=%v; want CLOSED at %v",
				got.Status, got.ClosedAt, got.PaidAt, got.UpdatedAt, f.now)
		}
		if _, ok := f.store.PendingState(o.ID); ok {
			t.Errorf("the state view still answers pending for closed order %s", o.ID)
		}
	}
	for _, o := range []*order.Order{inGrace, future} {
		if got := f.get(t, o.ID); got.Status != order.StatusPendingPayment || got.ClosedAt != nil {
			t.Errorf("order with deadline %v = %s closed_at=%v; want untouched", o.PaymentDeadline, got.Status, got.ClosedAt)
		}
		if _, ok := f.store.PendingState(o.ID); !ok {
			t.Errorf("the state view forgot pending order %s", o.ID)
		}
	}
	if got := f.get(t, paid.ID); got.Status != order.StatusPaid || got.ClosedAt != nil || got.PaidAt == nil || !got.PaidAt.Equal(paidAt) {
		t.Errorf("paid order = %s closed_at=%v paid_at=%v; want untouched", got.Status, got.ClosedAt, got.PaidAt)
	}
	if ids, err := f.store.CloseExpired(ctx, cutoff, 100, f.now); err != nil || len(ids) != 0 {
		t.Fatalf("second round = %v, %v; want nothing left to close", ids, err)
	}
	if ids, err := f.store.CloseExpired(ctx, f.now.Add(time.Hour), 0, f.now); err != nil || len(ids) != 0 {
		t.Fatalf("limit 0 = %v, %v; want nothing closed", ids, err)
	}
}

func TestCloseExpiredLimitOldestFirst(t *testing.T) {
	f := newExpireFixture(t)
	ctx := context.Background()
	var orders []*order.Order
	for i := range 5 {
		// Created newest deadline first, so that id order and deadline order differ.
		orders = append(orders, f.create(t, f.now.Add(-time.Duration(10-i)*time.Minute)))
	}
	if ids, err := f.store.CloseExpired(ctx, f.now, 2, f.now); err != nil || len(ids) != 2 {
		t.Fatalf("CloseExpired(limit 2) = %v, %v", ids, err)
	}
	for i, o := range orders {
		want := order.StatusPendingPayment
		if i < 2 {
			want = order.StatusClosed
		}
		if got := f.get(t, o.ID).Status; got != want {
			t.Errorf("order %d (deadline %v) = %s, want %s (oldest deadlines first)", i, o.PaymentDeadline, got, want)
		}
	}
	if ids, err := f.store.CloseExpired(ctx, f.now, 10, f.now); err != nil || len(ids) != 3 {
		t.Fatalf("CloseExpired(limit 10) = %v, %v; want the 3 left", ids, err)
	}
}

// A row another transaction holds (a payment between its row lock and its
// commit) is skipped, not waited for, and closed by a later round if it is
// still pending then.
func TestCloseExpiredSkipsLockedRows(t *testing.T) {
	f := newExpireFixture(t)
	ctx := context.Background()
	locked := f.create(t, f.now.Add(-10*time.Minute))
	free := f.create(t, f.now.Add(-10*time.Minute))
	holder, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback() }()
	if _, err := f.store.GetForUpdate(ctx, holder, locked.ID); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second) // far below innodb_lock_wait_timeout
	start := time.Now()
	closed, err := f.store.CloseExpired(rctx, f.now, 100, f.now)
	n := len(closed)
	cancel()
	if err != nil || n != 1 {
		t.Fatalf("CloseExpired with a locked row = %d, %v after %s; want the free order closed at once", n, err, time.Since(start))
	}
	if got := f.get(t, free.ID).Status; got != order.StatusClosed {
		t.Fatalf("free order = %s, want CLOSED", got)
	}
	if got := f.get(t, locked.ID).Status; got != order.StatusPendingPayment {
		t.Fatalf("locked order = %s, want it skipped", got)
	}
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	if ids, err := f.store.CloseExpired(ctx, f.now, 100, f.now); err != nil || len(ids) != 1 {
		t.Fatalf("round after the lock is released = %v, %v; want the skipped order closed", ids, err)
	}
}

// Replicas closing at the same time close every order exactly once: each
// replica stamps its own closed_at, and the rows stamped by a replica are
// exactly as many as it reported.
func TestCloseExpiredReplicas(t *testing.T) {
	f := newExpireFixture(t)
	ctx := context.Background()
	const orders, replicas, batch = 120, 4, 7
	for i := range orders {
		f.create(t, f.now.Add(-time.Hour+time.Duration(i)*time.Millisecond))
	}
	stores := make([]*order.Store, replicas)
	for i := range stores {
		stores[i] = newViewStore(t, openDB(t, f.dsn)) // a replica: its own pool
	}
	counts := make([]int, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			at := f.now.Add(time.Duration(i+1) * time.Microsecond)
			for {
				closed, err := s.CloseExpired(ctx, f.now, batch, at)
				n := len(closed)
				if err != nil {
					errs[i] = err
					return
				}
				counts[i] += n
				// Zero: what is left is locked by other replicas, which
				// close it.
				if n == 0 {
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += counts[i]
		var stamped int
		at := f.now.Add(time.Duration(i+1) * time.Microsecond)
		if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders WHERE closed_at = ?`, at).Scan(&stamped); err != nil {
			t.Fatal(err)
		}
		if stamped != counts[i] {
			t.Errorf("replica %d reported %d closed, but %d rows carry its closed_at", i, counts[i], stamped)
		}
	}
	t.Logf("closed per replica: %v", counts)
	var pending, closed int
	if err := f.db.QueryRow(`SELECT COALESCE(SUM(status = 'PENDING_PAYMENT'), 0), COALESCE(SUM(status = 'CLOSED'), 0) FROM orders`).
		Scan(&pending, &closed); err != nil {
		t.Fatal(err)
	}
	if total != orders || closed != orders || pending != 0 {
		t.Fatalf("replicas reported %d closed; table has %d closed and %d pending; want %d, %d, 0", total, closed, pending, orders, orders)
	}
}
