package order_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

var sharedMySQL *testenv.MySQLServer

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, nil)) }

// openDB opens dsn, migrates it and closes it when t ends.
func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func newService(t testing.TB, db *sql.DB, timeout time.Duration) (*order.Service, *order.Store) {
	t.Helper()
	store, err := order.NewStore(db, order.StoreConfig{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := order.NewService(store, order.DirectPlacer{Store: store}, order.ServiceConfig{PaymentWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return svc, store
}

func request(key string) order.PlaceRequest {
	return order.PlaceRequest{ClientID: "demo", IdempotencyKey: key, Order: order.NewOrder{
		CustomerID: "c-42", Currency: "EUR",
		Items: []order.NewItem{{SKU: "A", Name: "Anvil", Quantity: 2, UnitPrice: 1999}, {SKU: "B", Name: "Bell", Quantity: 1, UnitPrice: 500}},
	}}
}

func TestCreateAndGet(t *testing.T) {
	svc, store := newService(t, openDB(t, sharedMySQL.NewDatabase(t)), 2*time.Second)
	ctx := context.Background()
	res, err := svc.Place(ctx, request("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != order.OutcomeStored || res.Replayed || res.Order.ID.Version() != 7 {
		t.Fatalf("result = %+v, want a stored, new order with a UUIDv7", res)
	}
	got, err := store.Get(ctx, res.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := res.Order
	if got.Total != 2*1999+500 || got.Total != want.Total || got.Status != order.StatusPendingPayment ||
		len(got.Items) != 2 || got.Items[1] != want.Items[1] || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.PaymentDeadline.Equal(want.CreatedAt.Add(time.Minute)) || got.IdempotencyKey != "k1" {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if _, err := store.Get(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("Get(unknown) err = %v, want ErrNotFound", err)
	}
	if err := store.Create(ctx, got); !errors.Is(err, order.ErrConflict) {
		t.Fatalf("Create(same id) err = %v, want ErrConflict", err)
	}
}

func TestIdempotentReplay(t *testing.T) {
	svc, _ := newService(t, openDB(t, sharedMySQL.NewDatabase(t)), 2*time.Second)
	ctx := context.Background()
	first, err := svc.Place(ctx, request("same"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := svc.Place(ctx, request("same"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.Order.ID != first.Order.ID {
		t.Fatalf("replay = %+v, want the original order %s", again, first.Order.ID)
	}
	other := request("same")
	other.Order.Items[0].Quantity = 3
	if _, err := svc.Place(ctx, other); !errors.Is(err, order.ErrIdempotencyMismatch) {
		t.Fatalf("different body err = %v, want ErrIdempotencyMismatch", err)
	}
	// The key is scoped by client: another client may use the same key.
	theirs := request("same")
	theirs.ClientID = "other-client"
	res, err := svc.Place(ctx, theirs)
	if err != nil || res.Replayed || res.Order.ID == first.Order.ID {
		t.Fatalf("other client's key: res=%+v err=%v, want a new order", res, err)
	}
}

func TestConcurrentSameKeyMakesOneOrder(t *testing.T) {
	db := openDB(t, sharedMySQL.NewDatabase(t))
	svc, _ := newService(t, db, 5*time.Second)
	const n = 8
	ids := make(chan uuid.UUID, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := svc.Place(context.Background(), request("race"))
			if err != nil {
				t.Error(err)
				return
			}
			ids <- res.Order.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[uuid.UUID]bool{}
	for id := range ids {
		seen[id] = true
	}
	var rows int
	if err := db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || rows != 1 {
		t.Fatalf("%d distinct ids answered, %d rows stored; want 1 and 1", len(seen), rows)
	}
}

func TestTransitionRace(t *testing.T) {
	db := openDB(t, sharedMySQL.NewDatabase(t))
	svc, store := newService(t, db, 5*time.Second)
	ctx := context.Background()
	for i := range 20 {
		res, err := svc.Place(ctx, request(fmt.Sprintf("cas-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		id := res.Order.ID
		var wg sync.WaitGroup
		var paid, closed bool
		var errPaid, errClosed error
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			paid, errPaid = store.Transition(ctx, nil, id, order.StatusPendingPayment, order.StatusPaid, time.Now())
		}()
		go func() {
			defer wg.Done()
			<-start
			closed, errClosed = store.Transition(ctx, nil, id, order.StatusPendingPayment, order.StatusClosed, time.Now())
		}()
		close(start)
		wg.Wait()
		if errPaid != nil || errClosed != nil {
			t.Fatalf("errors: pay=%v close=%v", errPaid, errClosed)
		}
		if paid == closed {
			t.Fatalf("round %d: paid won=%v closed won=%v, want exactly one winner", i, paid, closed)
		}
		got, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := order.StatusPaid
		if closed {
			want = order.StatusClosed
		}
		if got.Status != want || (want == order.StatusPaid) != (got.PaidAt != nil) || (want == order.StatusClosed) != (got.ClosedAt != nil) {
			t.Fatalf("round %d: stored %s paid_at=%v closed_at=%v, want %s", i, got.Status, got.PaidAt, got.ClosedAt, want)
		}
	}
	if _, err := store.Transition(ctx, nil, uuid.Must(uuid.NewV7()), order.StatusPendingPayment, order.StatusPaid, time.Now()); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("unknown order err = %v, want ErrNotFound", err)
	}
	if _, err := store.Transition(ctx, nil, uuid.Must(uuid.NewV7()), order.StatusPaid, order.StatusClosed, time.Now()); !errors.Is(err, order.ErrInvalidTransition) {
		t.Fatalf("PAID → CLOSED err = %v, want ErrInvalidTransition", err)
	}
}

// TestKilledMySQL kills mariadbd while a write waits inside MySQL and checks
// that the store reports ErrUnavailable promptly, then works after restart.
func TestKilledMySQL(t *testing.T) {
	my := testenv.MySQL(t)
	db := openDB(t, my.DSN())
	const timeout = 3 * time.Second
	svc, store := newService(t, db, timeout)
	ctx := context.Background()
	before, err := svc.Place(ctx, request("before"))
	if err != nil {
		t.Fatal(err)
	}

	// Hold a lock on orders from another connection so the next Create is
	// stuck inside MySQL when the server dies.
	locker, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locker.ExecContext(ctx, `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := svc.Place(ctx, request("during"))
		done <- result{err, time.Since(start)}
	}()
	waitForLockWait(t, db)
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	locker.Close()
	if !errors.Is(res.err, order.ErrRefused) || !errors.Is(res.err, order.ErrUnavailable) {
		t.Fatalf("write during kill: err = %v, want ErrRefused wrapping ErrUnavailable", res.err)
	}
	if res.elapsed > timeout+time.Second {
		t.Fatalf("write during kill took %s, more than the %s store timeout", res.elapsed, timeout)
	}
	// While it is down every call fails fast with ErrUnavailable.
	start := time.Now()
	if _, err := store.Get(ctx, before.Order.ID); !errors.Is(err, order.ErrUnavailable) {
		t.Fatalf("Get while down: err = %v, want ErrUnavailable", err)
	}
	if err := store.Ping(ctx); !errors.Is(err, order.ErrUnavailable) {
		t.Fatalf("Ping while down: err = %v, want ErrUnavailable", err)
	}
	t.Logf("kill → ErrUnavailable after %s; calls while down failed in %s", res.elapsed, time.Since(start))

	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(ctx, before.Order.ID)
	if err != nil || got.ID != before.Order.ID {
		t.Fatalf("after restart Get = %v, %v; want the order written before the kill", got, err)
	}
	after, err := svc.Place(ctx, request("after"))
	if err != nil || after.Replayed {
		t.Fatalf("after restart Place = %+v, %v", after, err)
	}
}

// TestHungMySQL: a write stuck behind a lock longer than the store timeout
// is reported as ErrUnavailable at the timeout, not after MySQL's own
// lock-wait timeout.
func TestHungMySQL(t *testing.T) {
	db := openDB(t, sharedMySQL.NewDatabase(t))
	const timeout = 300 * time.Millisecond
	svc, store := newService(t, db, timeout)
	ctx := context.Background()
	locker, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	if _, err := locker.ExecContext(ctx, `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = svc.Place(ctx, request("hung"))
	elapsed := time.Since(start)
	if !errors.Is(err, order.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if elapsed > timeout+time.Second {
		t.Fatalf("took %s with a %s timeout", elapsed, timeout)
	}
	if _, err := locker.ExecContext(ctx, `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	if err := store.Ping(ctx); err != nil {
		t.Fatalf("store after the hang: %v", err)
	}
}

// waitForLockWait polls the process list until some query waits on a lock.
func waitForLockWait(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST
			WHERE STATE LIKE '%lock%' AND INFO LIKE 'INSERT INTO orders%'`).Scan(&n)
		if err == nil && n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no INSERT waited on the table lock within 5s")
}
