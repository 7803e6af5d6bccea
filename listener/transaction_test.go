package listener

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

var (
	sharedMySQL *testenv.MySQLServer
	sharedRedis *testenv.RedisServer
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, &sharedRedis)) }

// fixture is a Transaction on real MariaDB and Redis, with a settable clock.
type fixture struct {
	tx    *Transaction
	store *order.Store
	cache *fallback.OrderCache
	db    *sql.DB
	now   time.Time
}

func newFixture(t *testing.T, my *testenv.MySQLServer, rd *testenv.RedisServer) *fixture {
	t.Helper()
	db, err := sql.Open("mysql", my.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	store, err := order.NewStore(db, order.StoreConfig{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), DB: rd.NewDB(t),
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	cache, err := fallback.NewOrderCache(rdb, fallback.CacheConfig{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, cache: cache, db: db, now: time.Now().UTC().Truncate(time.Microsecond)}
	f.tx, err = NewTransaction(store, cache, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), TransactionConfig{
		ExecuteTimeout: time.Second, CheckTimeout: 300 * time.Millisecond,
		BreakerFailures: 3, BreakerOpenFor: time.Hour, Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) newOrder(key string) *order.Order {
	id := uuid.Must(uuid.NewV7())
	return &order.Order{ID: id, CustomerID: "c", Currency: "EUR", Total: 300, Status: order.StatusPendingPayment,
		Items: []order.Item{{SKU: "S", Name: "N", Quantity: 3, UnitPrice: 100}}, PaymentDeadline: f.now.Add(time.Minute),
		CreatedAt: f.now, UpdatedAt: f.now, ClientID: "demo", IdempotencyKey: key, RequestHash: "h-" + key}
}

// execute runs the local transaction of o as the producer would.
func (f *fixture) execute(o *order.Order) (primitive.LocalTransactionState, *placement) {
	p := f.tx.register(o)
	defer f.tx.unregister(o)
	msg := primitive.NewMessage("ORDER_PAID", []byte("{}"))
	msg.WithKeys([]string{o.ID.String()})
	return f.tx.ExecuteLocalTransaction(msg), p
}

func (f *fixture) check(key string) primitive.LocalTransactionState {
	msg := &primitive.MessageExt{Message: primitive.Message{Topic: "ORDER_PAID"}}
	msg.WithKeys([]string{key})
	return f.tx.CheckLocalTransaction(msg)
}

func (f *fixture) status(t *testing.T, id uuid.UUID) order.Status {
	t.Helper()
	o, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return o.Status
}

func TestExecuteStoresInMySQL(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	o := f.newOrder("k1")
	state, p := f.execute(o)
	if state != primitive.UnknowState || p.outcome != order.OutcomeStored || p.err != nil {
		t.Fatalf("execute = %v %+v, want UNKNOWN and stored", state, p)
	}
	if f.status(t, o.ID) != order.StatusPendingPayment {
		t.Fatal("order not pending in MySQL")
	}
	// The same order again (a duplicate key) is a conflict → ROLLBACK.
	if state, p := f.execute(o); state != primitive.RollbackMessageState || !errors.Is(p.err, order.ErrConflict) {
		t.Fatalf("duplicate execute = %v %+v, want ROLLBACK with ErrConflict", state, p)
	}
	// An execute for a message no placement registered writes nothing.
	msg := primitive.NewMessage("ORDER_PAID", nil)
	msg.WithKeys([]string{uuid.NewString()})
	if state := f.tx.ExecuteLocalTransaction(msg); state != primitive.RollbackMessageState {
		t.Fatalf("unregistered execute = %v, want ROLLBACK", state)
	}
}

// TestCheckDecisionTable walks every row of docs/design.md §4.2 with MySQL and
// Redis up.
func TestCheckDecisionTable(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	ctx := context.Background()
	stored := func(mutate func(*order.Order)) *order.Order {
		o := f.newOrder(uuid.NewString())
		if mutate != nil {
			mutate(o)
		}
		if err := f.store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		return o
	}

	t.Run("paid → COMMIT", func(t *testing.T) {
		o := stored(nil)
		if _, err := f.store.Transition(ctx, nil, o.ID, order.StatusPendingPayment, order.StatusPaid, f.now); err != nil {
			t.Fatal(err)
		}
		if got := f.check(o.ID.String()); got != primitive.CommitMessageState {
			t.Fatalf("got %v", got)
		}
		var answered sql.NullTime
		if err := f.db.QueryRow(`SELECT commit_answered_at FROM orders WHERE id = ?`, o.ID.String()).Scan(&answered); err != nil || !answered.Valid {
			t.Fatalf("commit_answered_at = %v (%v), want set", answered, err)
		}
	})
	t.Run("closed → ROLLBACK", func(t *testing.T) {
		o := stored(nil)
		if _, err := f.store.Transition(ctx, nil, o.ID, order.StatusPendingPayment, order.StatusClosed, f.now); err != nil {
			t.Fatal(err)
		}
		if got := f.check(o.ID.String()); got != primitive.RollbackMessageState {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("pending before deadline → UNKNOWN", func(t *testing.T) {
		o := stored(nil)
		if got := f.check(o.ID.String()); got != primitive.UnknowState || f.status(t, o.ID) != order.StatusPendingPayment {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("pending past deadline → closed, ROLLBACK", func(t *testing.T) {
		o := stored(func(o *order.Order) { o.PaymentDeadline = f.now.Add(-time.Second) })
		if got := f.check(o.ID.String()); got != primitive.RollbackMessageState || f.status(t, o.ID) != order.StatusClosed {
			t.Fatalf("got %v, status %s", got, f.status(t, o.ID))
		}
	})
	t.Run("deadline lost to a payment → COMMIT", func(t *testing.T) {
		// A payment holds the row lock; the close waits, then loses the CAS.
		o := stored(func(o *order.Order) { o.PaymentDeadline = f.now.Add(-time.Second) })
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if won, err := f.store.Transition(ctx, tx, o.ID, order.StatusPendingPayment, order.StatusPaid, f.now); err != nil || !won {
			t.Fatalf("payment CAS: %v %v", won, err)
		}
		done := make(chan primitive.LocalTransactionState, 1)
		go func() { done <- f.check(o.ID.String()) }()
		waitFor(t, 5*time.Second, "the close to wait on the payment's row lock", func() bool {
			var n int
			_ = f.db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST
				WHERE INFO LIKE 'UPDATE orders FORCE INDEX (PRIMARY) SET status%'`).Scan(&n)
			return n > 0
		})
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := <-done; got != primitive.CommitMessageState {
			t.Fatalf("got %v, want COMMIT (payment won)", got)
		}
	})
	t.Run("absent, cached → inserted from cache, cache cleared", func(t *testing.T) {
		o := f.newOrder("cached-1")
		if err := f.cache.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
		if got := f.check(o.ID.String()); got != primitive.UnknowState {
			t.Fatalf("got %v, want UNKNOWN (now pending in MySQL)", got)
		}
		if f.status(t, o.ID) != order.StatusPendingPayment {
			t.Fatal("not inserted")
		}
		if _, err := f.cache.Get(ctx, o.ID); !errors.Is(err, order.ErrNotFound) {
			t.Fatalf("cache entry left: %v", err)
		}
		// Again: idempotent, nothing duplicated.
		if err := f.cache.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
		if got := f.check(o.ID.String()); got != primitive.UnknowState {
			t.Fatalf("second check got %v", got)
		}
		var n int
		_ = f.db.QueryRow(`SELECT COUNT(*) FROM orders WHERE id = ?`, o.ID.String()).Scan(&n)
		if n != 1 {
			t.Fatalf("%d rows for the order", n)
		}
	})
	t.Run("absent, cached past deadline → inserted then closed", func(t *testing.T) {
		o := f.newOrder("cached-late")
		o.PaymentDeadline = f.now.Add(-time.Second)
		if err := f.cache.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
		if got := f.check(o.ID.String()); got != primitive.RollbackMessageState || f.status(t, o.ID) != order.StatusClosed {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("absent, cached, key owned by another order → stored without the key", func(t *testing.T) {
		first := stored(func(o *order.Order) { o.IdempotencyKey = "shared-key" })
		retry := f.newOrder("shared-key")
		if err := f.cache.Put(ctx, retry); err != nil {
			t.Fatal(err)
		}
		if got := f.check(retry.ID.String()); got != primitive.UnknowState {
			t.Fatalf("got %v", got)
		}
		if f.status(t, retry.ID) != order.StatusPendingPayment || f.status(t, first.ID) != order.StatusPendingPayment {
			t.Fatal("both orders must be stored")
		}
	})
	t.Run("stored by the sweeper between the reads → not absent", func(t *testing.T) {
		// check read MySQL (absent), then the sweeper stored the order and
		// deleted its cache entry, then check reads the cache (miss).
		o := stored(nil)
		got, reason, err := f.tx.insertFromCache(ctx, o.ID)
		if err != nil || got == nil || got.Status != order.StatusPendingPayment || reason == "absent" {
			t.Fatalf("insertFromCache after the sweeper = %+v %q %v, want the stored row", got, reason, err)
		}
	})
	t.Run("absent everywhere → ROLLBACK", func(t *testing.T) {
		if got := f.check(uuid.NewString()); got != primitive.RollbackMessageState {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("key that is not an order id → ROLLBACK", func(t *testing.T) {
		if got := f.check("not-a-uuid"); got != primitive.RollbackMessageState {
			t.Fatalf("got %v", got)
		}
	})
}

// TestOutages kills MySQL and Redis for real and checks the "down" rows of
// the decision table and both execute fallbacks.
func TestOutages(t *testing.T) {
	my := testenv.MySQL(t)
	rd := testenv.Redis(t)
	f := newFixture(t, my, rd)
	ctx := context.Background()
	pending := f.newOrder("pending")
	if err := f.store.Create(ctx, pending); err != nil {
		t.Fatal(err)
	}
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}

	// MySQL down, Redis up: execute caches the order.
	cached := f.newOrder("while-down")
	state, p := f.execute(cached)
	if state != primitive.UnknowState || p.outcome != order.OutcomeCached {
		t.Fatalf("execute with MySQL down = %v %+v, want UNKNOWN cached", state, p)
	}
	if _, err := f.cache.Get(ctx, cached.ID); err != nil {
		t.Fatalf("cached order not in Redis: %v", err)
	}
	// MySQL down: checks answer UNKNOWN, whatever the order.
	for _, key := range []string{pending.ID.String(), cached.ID.String(), uuid.NewString()} {
		if got := f.check(key); got != primitive.UnknowState {
			t.Fatalf("check %s with MySQL down = %v, want UNKNOWN", key, got)
		}
	}
	// Both down: execute refuses, nothing anywhere. ROLLBACK when the
	// failures prove nothing was written (refused connections); UNKNOWN
	// with ErrOutcomeUnknown when a write died on an open connection and
	// may have landed (the check-back then finds it absent and rolls back).
	if err := rd.Kill(); err != nil {
		t.Fatal(err)
	}
	refused := f.newOrder("refused")
	state, p = f.execute(refused)
	switch {
	case p.outcome != "" || p.err == nil:
		t.Fatalf("execute with both down = %v %+v, want refused", state, p)
	case state == primitive.RollbackMessageState:
	case state == primitive.UnknowState && errors.Is(p.err, order.ErrOutcomeUnknown):
	default:
		t.Fatalf("execute with both down = %v %v, want ROLLBACK, or UNKNOWN with ErrOutcomeUnknown", state, p.err)
	}

	// MySQL back, Redis still down: an absent order cannot be confirmed absent → UNKNOWN.
	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	f.tx.breaker = newTestBreaker(f.tx) // the test breaker stays open for an hour; start closed
	if got := f.check(cached.ID.String()); got != primitive.UnknowState {
		t.Fatalf("absent order with Redis down = %v, want UNKNOWN", got)
	}
	if got := f.check(pending.ID.String()); got != primitive.UnknowState {
		t.Fatalf("pending order = %v, want UNKNOWN", got)
	}
	// Redis back (AOF kept the cached order): the check stores it.
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "cached order stored after both restarts", func() bool {
		f.check(cached.ID.String())
		o, err := f.store.Get(ctx, cached.ID)
		return err == nil && o.Status == order.StatusPendingPayment
	})
	if _, err := f.store.Get(ctx, refused.ID); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("refused order exists: %v", err)
	}
	if _, err := f.cache.Get(ctx, refused.ID); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("refused order cached: %v", err)
	}
}

// TestAmbiguousWriteAnswersUnknown: the MySQL write times out (mariadbd
// hung with SIGSTOP, so the insert may or may not commit) and Redis is
// down. The order is refused, but the half message is left UNKNOWN for the
// check-back to settle from what MySQL really holds; ROLLBACK could strand
// a committed row.
func TestAmbiguousWriteAnswersUnknown(t *testing.T) {
	my := testenv.MySQL(t)
	rd := testenv.Redis(t)
	f := newFixture(t, my, rd)
	f.tx.cfg.ExecuteTimeout = 300 * time.Millisecond
	if err := rd.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := my.Pause(); err != nil {
		t.Fatal(err)
	}
	o := f.newOrder("hung")
	state, p := f.execute(o)
	if err := my.Resume(); err != nil {
		t.Fatal(err)
	}
	if state != primitive.UnknowState || !errors.Is(p.err, order.ErrOutcomeUnknown) {
		t.Fatalf("execute with MySQL hung and Redis down = %v %v, want UNKNOWN with ErrOutcomeUnknown", state, p.err)
	}
	// The check-back settles it from MySQL: here the insert never ran
	// (the server was stopped before reading it), so ROLLBACK once Redis
	// confirms the order is not cached either.
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	f.tx.breaker = newTestBreaker(f.tx)
	// Either outcome is consistent: stored → the flow goes on (pending,
	// never ROLLBACK); absent → ROLLBACK.
	waitFor(t, 10*time.Second, "the check-back to settle the order", func() bool {
		got := f.check(o.ID.String())
		_, err := f.store.Get(context.Background(), o.ID)
		switch {
		case err == nil && got == primitive.RollbackMessageState:
			t.Fatalf("a stored order was rolled back")
		case err == nil:
			return got == primitive.UnknowState // pending, waits for payment
		case errors.Is(err, order.ErrNotFound):
			return got == primitive.RollbackMessageState
		}
		return false
	})
}

// TestCheckStaysFastDuringMySQLOutage answers 1,000 check-backs with MySQL
// killed and reports the slowest. The breaker opens after the first few
// failures, so the rest never touch the network.
func TestCheckStaysFastDuringMySQLOutage(t *testing.T) {
	my := testenv.MySQL(t)
	f := newFixture(t, my, sharedRedis)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}
	durations := make([]time.Duration, len(ids))
	for i, id := range ids {
		start := time.Now()
		if got := f.check(id); got != primitive.UnknowState {
			t.Fatalf("check %d = %v, want UNKNOWN", i, got)
		}
		durations[i] = time.Since(start)
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	longest := durations[len(durations)-1]
	t.Logf("1000 checks with MySQL killed: p50 %s, p99 %s, longest %s (check timeout %s)",
		durations[500], durations[990], longest, f.tx.cfg.CheckTimeout)
	if longest > f.tx.cfg.CheckTimeout+200*time.Millisecond {
		t.Fatalf("a check took %s, beyond its %s timeout", longest, f.tx.cfg.CheckTimeout)
	}
}

func newTestBreaker(t *Transaction) *gobreaker.CircuitBreaker[struct{}] {
	fresh, _ := NewTransaction(t.store, t.cache, t.metrics, t.logger, t.cfg)
	return fresh.breaker
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
