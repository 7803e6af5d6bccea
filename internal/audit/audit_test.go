package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
)

var sharedMySQL *testenv.MySQLServer

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, nil)) }

func newDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func seedOrder(t *testing.T, db *sql.DB, status string) string {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC()
	if _, err := db.Exec(`INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at)
		VALUES (?, 'c', 'EUR', 1, ?, ?, ?, ?)`, id, status, now, now, now); err != nil {
		t.Fatal(err)
	}
	return id
}

func ship(t *testing.T, db *sql.DB, id string, consumed bool) {
	t.Helper()
	if consumed {
		if _, err := db.Exec(`INSERT INTO consumed_messages VALUES ('fulfillment', ?, 'm', NOW())`, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES (?, 'm', 'CREATED', NOW())`, id); err != nil {
		t.Fatal(err)
	}
}

// TestEverythingWrongAtOnce uses two databases, as with a separate
// fulfillment server: counts are exact, lists are cut at MaxListed.
func TestEverythingWrongAtOnce(t *testing.T) {
	orders, fulfillment := newDB(t), newDB(t)
	ok := seedOrder(t, orders, "PAID")
	ship(t, fulfillment, ok, true)
	for range 3 {
		seedOrder(t, orders, "PAID") // lost
	}
	dup := seedOrder(t, orders, "PAID")
	ship(t, fulfillment, dup, true)
	ship(t, fulfillment, dup, false)
	ship(t, fulfillment, seedOrder(t, orders, "CLOSED"), true)
	// A consumption recorded for an order that does not exist, without a
	// shipment, is a phantom too.
	if _, err := fulfillment.Exec(`INSERT INTO consumed_messages VALUES ('fulfillment', ?, 'm', NOW())`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	// Another group's consumption is not this audit's business.
	if _, err := fulfillment.Exec(`INSERT INTO consumed_messages VALUES ('billing', ?, 'm', NOW())`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	held := uuid.New()
	r, err := Run(context.Background(), orders, fulfillment, Config{MaxListed: 2,
		Accepted: []uuid.UUID{uuid.MustParse(ok), held, uuid.New()},
		Holders:  []Holder{{Name: "cached", IDs: func(context.Context) ([]uuid.UUID, error) { return []uuid.UUID{held}, nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || r.Lost != 3 || len(r.LostIDs) != 2 || r.Duplicated != 1 || r.Phantom != 2 || r.Absent != 1 ||
		r.Paid != 5 || r.Applied != 2 || r.Shipments != 4 || r.Held["cached"] != 1 || r.Accepted != 3 || r.Passes != 1 {
		t.Fatalf("report = %+v", r)
	}
	if got := r.Failures(); got != "lost=3 duplicated=1 phantom=2 absent=1" {
		t.Fatalf("Failures = %q", got)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"duplicated: " + dup + " (2 shipments)", "(order CLOSED)", "(order ABSENT)", "FAILED: lost=3"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestHolderErrorFailsTheAudit(t *testing.T) {
	db := newDB(t)
	_, err := Run(context.Background(), db, db, Config{Holders: []Holder{{Name: "cached",
		IDs: func(context.Context) ([]uuid.UUID, error) { return nil, errors.New("redis down") }}}})
	if err == nil || !strings.Contains(err.Error(), "read cached orders: redis down") {
		t.Fatalf("Run = %v", err)
	}
	if _, err := Run(context.Background(), nil, db, Config{}); err == nil {
		t.Fatal("Run without the order database ran")
	}
}

// TestSettleGivesUp: a lost order stays lost; the audit stops after Settle.
func TestSettleGivesUp(t *testing.T) {
	db := newDB(t)
	seedOrder(t, db, "PAID")
	start := time.Now()
	r, err := Run(context.Background(), db, db, Config{Settle: 400 * time.Millisecond, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost != 1 || r.Passes < 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("report = %+v after %s", r, time.Since(start))
	}
}

// TestReadRetriedWhileSettling: with mariadbd SIGKILLed when the audit
// starts, passes fail until it is back, and the audit then reports from a
// complete read; a database that stays down past Settle is an error.
func TestReadRetriedWhileSettling(t *testing.T) {
	my := testenv.MySQL(t)
	db, err := sql.Open("mysql", my.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	ship(t, db, seedOrder(t, db, "PAID"), true)
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), db, db, Config{Settle: 300 * time.Millisecond, Poll: 100 * time.Millisecond}); err == nil {
		t.Fatal("audit with MySQL down throughout reported")
	}
	type result struct {
		r   Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := Run(context.Background(), db, db, Config{Settle: time.Minute, Poll: 100 * time.Millisecond})
		done <- result{r, err}
	}()
	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || !res.r.OK || res.r.Paid != 1 || res.r.Applied != 1 || res.r.Passes < 2 {
		t.Fatalf("audit across the restart = %+v, %v; want OK from a later pass", res.r, res.err)
	}
}

// TestPaymentToShipment: the latency from an APPLIED payment's record to
// the order's first shipment, over the orders that have both.
func TestPaymentToShipment(t *testing.T) {
	db := newDB(t)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	pay := func(id, txn, status string, at time.Time) {
		t.Helper()
		outcome := status // APPLIED
		if status == "REFUND_REQUIRED" {
			outcome = "ALREADY_PAID"
		}
		if _, err := db.Exec(`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at) VALUES (?, ?, 1, 'EUR', ?, ?, ?)`,
			txn, id, status, outcome, at); err != nil {
			t.Fatal(err)
		}
	}
	shipAt := func(id string, at time.Time) {
		t.Helper()
		if _, err := db.Exec(`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES (?, 'm', 'CREATED', ?)`, id, at); err != nil {
			t.Fatal(err)
		}
	}
	fast, slow, unshipped := seedOrder(t, db, "PAID"), seedOrder(t, db, "PAID"), seedOrder(t, db, "PAID")
	pay(fast, "t1", "APPLIED", t0)
	shipAt(fast, t0.Add(100*time.Millisecond))
	pay(slow, "t2", "APPLIED", t0)
	shipAt(slow, t0.Add(300*time.Millisecond))
	pay(slow, "t3", "REFUND_REQUIRED", t0.Add(-time.Hour)) // a second payment: not the one that paid
	pay(unshipped, "t4", "APPLIED", t0)
	r, err := Run(context.Background(), db, db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r.PaymentToShipmentCount != 2 || r.PaymentToShipmentP50 != 100 || r.PaymentToShipmentP99 != 300 || r.PaymentToShipmentMax != 300 {
		t.Fatalf("payment → shipment: count %d p50 %v p99 %v max %v; want 2, 100, 300, 300 ms",
			r.PaymentToShipmentCount, r.PaymentToShipmentP50, r.PaymentToShipmentP99, r.PaymentToShipmentMax)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "payment → shipment p50 / p99 / max  100 / 300 / 300 ms") {
		t.Errorf("table lacks the latency line:\n%s", b.String())
	}
}
