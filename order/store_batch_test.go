package order_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/roundtrip"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

// openMulti opens dsn as orderd does (interpolated parameters, multiple
// statements per query), counting requests on reg, and migrates it.
func openMulti(t testing.TB, dsn string, reg prometheus.Registerer) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.InterpolateParams, cfg.MultiStatements, cfg.ParseTime = true, true, true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(roundtrip.New(reg).Connector(conn))
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func newOrder(key string) *order.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &order.Order{ID: uuid.Must(uuid.NewV7()), CustomerID: "c-1", Currency: "EUR",
		Items: []order.Item{{SKU: "A", Name: "Anvil", Quantity: 2, UnitPrice: 1999}, {SKU: "B", Name: "Bell", Quantity: 1, UnitPrice: 500}},
		Total: 4498, Status: order.StatusPendingPayment, PaymentDeadline: now.Add(time.Minute), CreatedAt: now, UpdatedAt: now,
		ClientID: "demo", IdempotencyKey: key, RequestHash: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
}

// stored reports whether o is in MySQL whole (row, both items, its key)
// or not at all, and fails the test when only part of it is.
func stored(t *testing.T, db *sql.DB, o *order.Order) bool {
	t.Helper()
	var rows, items, keys int
	err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM orders WHERE id = ?), (SELECT COUNT(*) FROM order_items WHERE order_id = ?),
		(SELECT COUNT(*) FROM idempotency_keys WHERE order_id = ?)`, o.ID.String(), o.ID.String(), o.ID.String()).Scan(&rows, &items, &keys)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rows == 1 && items == len(o.Items) && keys == 1:
		return true
	case rows == 0 && items == 0 && keys == 0:
		return false
	}
	t.Fatalf("order %s stored in part: %d rows, %d items, %d keys", o.ID, rows, items, keys)
	return false
}

// TestOneRoundTripRefusedLeavesNothing: a transaction MySQL refuses
// half-way (the key exists, after the order and its items were inserted)
// is rolled back before its connection is reused. Otherwise the next
// START TRANSACTION on that connection would commit the orphan rows.
func TestOneRoundTripRefusedLeavesNothing(t *testing.T) {
	db := openMulti(t, sharedMySQL.NewDatabase(t), nil)
	db.SetMaxOpenConns(1) // every call on the same connection
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 5 * time.Second, OneRoundTrip: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := newOrder("k1")
	if err := store.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(ctx, first.ID)
	if err != nil || len(got.Items) != 2 || got.IdempotencyKey != "k1" || got.Total != first.Total {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	dup := newOrder("k1")
	if err := store.Create(ctx, dup); !errors.Is(err, order.ErrConflict) {
		t.Fatalf("same key: err = %v, want ErrConflict", err)
	}
	next := newOrder("k2")
	if err := store.Create(ctx, next); err != nil {
		t.Fatal(err)
	}
	if stored(t, db, dup) || !stored(t, db, next) {
		t.Fatalf("refused order stored %v, next stored %v; want false, true", stored(t, db, dup), stored(t, db, next))
	}
}

// TestGroupOneBadOrder: one order of a group collides with a stored key;
// MySQL refuses the group, and every other order is still stored, each
// with its own answer.
func TestGroupOneBadOrder(t *testing.T) {
	db := openMulti(t, sharedMySQL.NewDatabase(t), nil)
	for _, oneRT := range []bool{true, false} {
		t.Run(fmt.Sprintf("one round trip %v", oneRT), func(t *testing.T) {
			store, err := order.NewStore(db, order.StoreConfig{Timeout: 5 * time.Second, OneRoundTrip: oneRT})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			taken := newOrder("taken-" + strconv.FormatBool(oneRT))
			if err := store.Create(ctx, taken); err != nil {
				t.Fatal(err)
			}
			var orders []*order.Order
			for i := 0; i < 10; i++ {
				orders = append(orders, newOrder(fmt.Sprintf("g-%v-%d", oneRT, i)))
			}
			orders[5].IdempotencyKey = taken.IdempotencyKey
			errs := order.WriteGroup(store, ctx, orders)
			if st := store.GroupStats(); st.Refused != 1 || st.Unknown != 0 || st.Orders != 11 {
				t.Errorf("group stats %+v, want 11 orders and the one group refused", st)
			}
			for i, o := range orders {
				if i == 5 {
					if !errors.Is(errs[i], order.ErrConflict) || stored(t, db, o) {
						t.Errorf("bad order: err %v, stored %v; want ErrConflict, not stored", errs[i], stored(t, db, o))
					}
					continue
				}
				if errs[i] != nil || !stored(t, db, o) {
					t.Errorf("order %d: err %v, stored %v; want stored", i, errs[i], stored(t, db, o))
				}
			}
		})
	}
}

// TestGroupCommitConcurrent: concurrent Creates share transactions, and
// every caller gets its own answer.
func TestGroupCommitConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := openMulti(t, sharedMySQL.NewDatabase(t), reg)
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 10 * time.Second, OneRoundTrip: true,
		GroupCommit: order.GroupCommitConfig{Enabled: true, Window: 200 * time.Millisecond, MaxBatch: 8}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	taken := newOrder("taken")
	if err := store.Create(ctx, taken); err != nil {
		t.Fatal(err)
	}
	execs := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "txorder_mysql_requests_total" {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == "exec" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	run := func(n int, bad map[int]bool) {
		before := execs()
		orders := make([]*order.Order, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range orders {
			orders[i] = newOrder(uuid.NewString())
			if bad[i] {
				orders[i].IdempotencyKey = taken.IdempotencyKey
			}
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = store.Create(ctx, orders[i]) }()
		}
		wg.Wait()
		for i, o := range orders {
			if bad[i] {
				if !errors.Is(errs[i], order.ErrConflict) || stored(t, db, o) {
					t.Errorf("bad order %d: err %v, stored %v; want ErrConflict, not stored", i, errs[i], stored(t, db, o))
				}
			} else if errs[i] != nil || !stored(t, db, o) {
				t.Errorf("order %d: err %v, stored %v; want stored", i, errs[i], stored(t, db, o))
			}
		}
		if bad == nil {
			// One query per transaction: far fewer than one per order.
			if d := execs() - before; d > float64(n)/2 {
				t.Errorf("%d orders took %.0f transactions, want ≤ %d (grouped)", n, d, n/2)
			}
		}
	}
	run(24, nil)
	if st := store.GroupStats(); st.Orders != 25 || st.Transactions > 13 || st.Refused != 0 {
		t.Errorf("group stats %+v after 1 + 24 orders, want ≤ 13 transactions, none refused", st)
	}
	run(24, map[int]bool{3: true, 17: true})
	if st := store.GroupStats(); st.Orders != 49 || st.Refused < 1 {
		t.Errorf("group stats %+v after 24 more with two bad ones, want 49 orders and a refused group", st)
	}
}

// TestGroupDeadlock: MySQL picks a group as a deadlock's victim and rolls
// it back; its orders are then written one by one, and only the two whose
// keys the other transaction took get a conflict.
func TestGroupDeadlock(t *testing.T) {
	db := openMulti(t, sharedMySQL.NewDatabase(t), nil)
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 20 * time.Second, OneRoundTrip: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.Exec("CREATE TABLE scratch (n INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	other, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := other.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The other transaction writes many rows, so that InnoDB makes the
	// group (fewer rows) the deadlock's victim, then takes key k1.
	exec("START TRANSACTION")
	for i := 0; i < 10; i++ {
		exec("INSERT INTO scratch SELECT seq FROM seq_" + strconv.Itoa(i*100+1) + "_to_" + strconv.Itoa(i*100+100))
	}
	key := func(k string) {
		exec("INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ('demo', ?, 'h', ?, NOW(6))", k, uuid.NewString())
	}
	key("k1")
	orders := []*order.Order{newOrder("n0"), newOrder("k2"), newOrder("n2"), newOrder("k1"), newOrder("n4")}
	var errs []error
	done := make(chan struct{})
	go func() { defer close(done); errs = order.WriteGroup(store, ctx, orders) }()
	// The group holds k2 and waits for k1.
	// (INNODB_TRX would need the PROCESS privilege: a group query running
	// for 300 ms here is one waiting for a lock; MariaDB shows the
	// multi-statement query's current statement.)
	waitFor(t, db, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO idempotency_keys%' AND TIME_MS > 300", 1)
	key("k2") // deadlock: the group is rolled back, this insert goes on
	exec("COMMIT")
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("group did not finish")
	}
	for i, o := range orders {
		conflict := o.IdempotencyKey == "k1" || o.IdempotencyKey == "k2"
		switch {
		case conflict && (!errors.Is(errs[i], order.ErrConflict) || stored(t, db, o)):
			t.Errorf("order with key %s: err %v, stored %v; want ErrConflict, not stored", o.IdempotencyKey, errs[i], stored(t, db, o))
		case !conflict && (errs[i] != nil || !stored(t, db, o)):
			t.Errorf("order with key %s: err %v, stored %v; want stored", o.IdempotencyKey, errs[i], stored(t, db, o))
		}
	}
	var deadlocks int
	var name string
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'").Scan(&name, &deadlocks); err != nil || deadlocks == 0 {
		t.Errorf("Innodb_deadlocks = %d (%v), want ≥ 1: the test did not make a deadlock", deadlocks, err)
	}
}

func waitFor(t *testing.T, db *sql.DB, q string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			rows, _ := db.Query("SELECT COALESCE(STATE,''), TIME_MS, LEFT(COALESCE(INFO,''), 80) FROM information_schema.PROCESSLIST")
			for rows != nil && rows.Next() {
				var st, info string
				var ms float64
				_ = rows.Scan(&st, &ms, &info)
				t.Logf("process: %q %.0f ms %q", st, ms, info)
			}
			t.Fatalf("%s: %d after 30s, want %d", q, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGroupCommitMySQLKilled: MariaDB is killed -9 while groups commit.
// Every order answered "stored" is stored whole after the restart; every
// other answer is "unavailable" (the outcome unknown to the caller), and
// no order is ever stored in part.
func TestGroupCommitMySQLKilled(t *testing.T) {
	my := testenv.MySQL(t)
	db := openMulti(t, my.NewDatabase(t), nil)
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 2 * time.Second, OneRoundTrip: true,
		GroupCommit: order.GroupCommitConfig{Enabled: true, Window: 2 * time.Millisecond, MaxBatch: 16}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	type answer struct {
		o   *order.Order
		err error
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o := newOrder(uuid.NewString())
				err := store.Create(ctx, o)
				mu.Lock()
				answers = append(answers, answer{o, err})
				mu.Unlock()
			}
		}()
	}
	waitAnswers := func(n int) {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			k := len(answers)
			mu.Unlock()
			if k >= n {
				return
			}
		}
		t.Fatalf("fewer than %d answers after 30s", n)
	}
	waitAnswers(200)
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	atKill := len(answers)
	mu.Unlock()
	waitAnswers(atKill + 50) // answers while MySQL is down
	close(stop)
	wg.Wait()
	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	var ok, unavailable int
	for _, a := range answers {
		switch {
		case a.err == nil:
			ok++
			if !stored(t, db, a.o) {
				t.Errorf("order %s answered stored, not in MySQL after the restart", a.o.ID)
			}
		case order.IsUnavailable(a.err):
			unavailable++
			stored(t, db, a.o) // either way, never in part
		default:
			t.Errorf("order %s: %v, want stored or unavailable", a.o.ID, a.err)
		}
	}
	if ok == 0 || unavailable == 0 {
		t.Errorf("%d stored, %d unavailable: want both (the kill must land during the run)", ok, unavailable)
	}
	t.Logf("%d answers: %d stored, %d unavailable; group stats %+v", len(answers), ok, unavailable, store.GroupStats())
	if st := store.GroupStats(); st.Unknown == 0 || st.Refused != 0 {
		t.Errorf("group stats %+v: want the groups cut by the kill counted unknown, none refused", st)
	}
}

// TestGroupTimeoutAfterCommit: the group commits but its answer never
// comes back. Every member is told "unavailable, may have committed" (so
// Execute keeps its half message open: UNKNOWN, never ROLLBACK), and the
// check-back's read finds each order stored and pending.
func TestGroupTimeoutAfterCommit(t *testing.T) {
	dsn := sharedMySQL.NewDatabase(t)
	direct := openMulti(t, dsn, nil)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.Start(t, "mysql", cfg.Addr)
	cfg.Addr = proxy.Addr()
	db := openMulti(t, cfg.FormatDSN(), nil)
	store, err := order.NewStore(db, order.StoreConfig{Timeout: time.Second, OneRoundTrip: true,
		GroupCommit: order.GroupCommitConfig{Enabled: true, Window: 50 * time.Millisecond, MaxBatch: 4}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Create(ctx, newOrder("warm")); err != nil { // connections open before the hold
		t.Fatal(err)
	}
	// Requests pass, answers are lost: the commit lands, its answer never comes.
	if err := proxy.Hang(faultproxy.Downstream); err != nil {
		t.Fatal(err)
	}
	orders := []*order.Order{newOrder("a"), newOrder("b"), newOrder("c")}
	errs := order.WriteGroup(store, ctx, orders)
	proxy.Heal()
	view, err := order.NewStore(direct, order.StoreConfig{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range orders {
		if !order.IsUnavailable(errs[i]) || !order.WriteMayHaveCommitted(errs[i]) {
			t.Errorf("order %d: err %v, want unavailable and maybe committed", i, errs[i])
		}
		st, err := view.GetState(ctx, o.ID)
		if err != nil || st.Status != order.StatusPendingPayment || !stored(t, direct, o) {
			t.Errorf("order %d after the lost answer: state %+v, %v; want stored and pending", i, st, err)
		}
	}
}
