package migrations

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/internal/testenv"
)

var sharedMySQL *testenv.MySQLServer

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, nil)) }

func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", sharedMySQL.NewDatabase(t)+"&multiStatements=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestIdentifiersAreCaseSensitive stores, for every identifier column, two
// rows whose value differs only in case, and checks that both are stored
// and that each is found only by its own spelling (issue 12, findings 1
// and 2: a payment and an idempotency key matched their case variants).
func TestIdentifiersAreCaseSensitive(t *testing.T) {
	db := open(t)
	if _, err := Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	const (
		upperID = "0190B7A4-1C2D-7E3F-8A4B-5C6D7E8F9A0B"
		lowerID = "0190b7a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b"
	)
	now := time.Now().UTC()
	insertOrder := func(id, client, currency, status string) {
		exec(t, db, `INSERT INTO orders (id, client_id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at)
			VALUES (?, ?, 'c', ?, 1, ?, ?, ?, ?)`, id, client, currency, status, now, now, now)
	}
	// Rows the foreign key of order_items needs.
	insertOrder(upperID, "Shop", "EUR", "PENDING_PAYMENT")
	insertOrder(lowerID, "shop", "eur", "PENDING_PAYMENT")

	cases := []struct {
		table, column string
		insert        string // one row with ? for the column's value (and a distinct-row tag)
		upper, lower  string
	}{
		{"orders", "id", "", upperID, lowerID},
		{"orders", "client_id", "", "Shop", "shop"},
		{"orders", "currency", "", "EUR", "eur"},
		{"order_items", "order_id",
			`INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price) VALUES (?, 1, 's', 'n', 1, 1)`, upperID, lowerID},
		{"idempotency_keys", "client_id",
			`INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES (?, 'K', 'h', CONCAT('c-', ?), UTC_TIMESTAMP(6))`, "Client", "client"},
		{"idempotency_keys", "idem_key",
			`INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ('c', ?, 'h', CONCAT('k-', ?), UTC_TIMESTAMP(6))`, "K-CaseKey", "k-casekey"},
		{"idempotency_keys", "request_hash",
			`INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ('h', CONCAT('h-', ?), ?, CONCAT('h-', ?), UTC_TIMESTAMP(6))`, "ABCDEF", "abcdef"},
		{"idempotency_keys", "order_id",
			`INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ('o', CONCAT('o-', ?), 'h', ?, UTC_TIMESTAMP(6))`, upperID, lowerID},
		{"payments", "provider_txn_id",
			`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at) VALUES (?, 'x', 1, 'EUR', 'APPLIED', 'APPLIED', UTC_TIMESTAMP(6))`, "X-TxnCase-Ab", "x-txncase-ab"},
		{"payments", "order_id",
			`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at) VALUES (CONCAT('p-', ?), ?, 1, 'EUR', 'APPLIED', 'APPLIED', UTC_TIMESTAMP(6))`, upperID, lowerID},
		{"payments", "currency",
			`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at) VALUES (CONCAT('c-', ?), 'x', 1, ?, 'APPLIED', 'APPLIED', UTC_TIMESTAMP(6))`, "USD", "usd"},
		{"payment_conflicts", "provider_txn_id",
			`INSERT INTO payment_conflicts (provider_txn_id, payment_id, order_id, amount, currency, times_seen, first_seen_at, last_seen_at) VALUES (?, 1, 'x', 1, 'EUR', 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`, "Tx-A", "tx-a"},
		{"payment_conflicts", "order_id",
			`INSERT INTO payment_conflicts (provider_txn_id, payment_id, order_id, amount, currency, times_seen, first_seen_at, last_seen_at) VALUES ('t', 1, ?, 1, 'EUR', 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`, upperID, lowerID},
		{"payment_conflicts", "currency",
			`INSERT INTO payment_conflicts (provider_txn_id, payment_id, order_id, amount, currency, times_seen, first_seen_at, last_seen_at) VALUES ('t', 1, 'x', 1, ?, 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`, "GBP", "gbp"},
		{"consumed_messages", "consumer_group",
			`INSERT INTO consumed_messages (consumer_group, order_id, msg_id, consumed_at) VALUES (?, 'o', 'm', UTC_TIMESTAMP(6))`, "Fulfillment", "fulfillment"},
		{"consumed_messages", "order_id",
			`INSERT INTO consumed_messages (consumer_group, order_id, msg_id, consumed_at) VALUES ('g', ?, 'm', UTC_TIMESTAMP(6))`, upperID, lowerID},
		{"consumed_messages", "msg_id",
			`INSERT INTO consumed_messages (consumer_group, order_id, msg_id, consumed_at) VALUES ('m', CONCAT('m-', ?), ?, UTC_TIMESTAMP(6))`, "AC1E0001", "ac1e0001"},
		{"shipments", "order_id",
			`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES (?, 'm', 'CREATED', UTC_TIMESTAMP(6))`, upperID, lowerID},
		{"shipments", "msg_id",
			`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES ('o', ?, 'CREATED', UTC_TIMESTAMP(6))`, "AC1E0002", "ac1e0002"},
		{"shipments", "status",
			`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES ('s', CONCAT('s-', ?), ?, UTC_TIMESTAMP(6))`, "Case-Status", "case-status"},
		{"dead_letters", "consumer_group",
			`INSERT INTO dead_letters (consumer_group, original_msg_id, msg_key, body, reconsume_times, reason, first_seen_at, last_seen_at) VALUES (?, 'm', 'k', '', 0, 'r', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`, "Fulfillment", "fulfillment"},
		{"dead_letters", "original_msg_id",
			`INSERT INTO dead_letters (consumer_group, original_msg_id, msg_key, body, reconsume_times, reason, first_seen_at, last_seen_at) VALUES ('g', ?, 'k', '', 0, 'r', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`, "AC1E0003", "ac1e0003"},
	}
	for _, tc := range cases {
		t.Run(tc.table+"."+tc.column, func(t *testing.T) {
			if tc.insert != "" {
				for _, v := range []string{tc.upper, tc.lower} {
					args := make([]any, strings.Count(tc.insert, "?"))
					for i := range args {
						args[i] = v
					}
					if _, err := db.Exec(tc.insert, args...); err != nil {
						t.Fatalf("store %q after its case variant: %v", v, err)
					}
				}
			}
			for _, v := range []string{tc.upper, tc.lower} {
				var n int
				if err := db.QueryRow(`SELECT COUNT(*) FROM `+tc.table+` WHERE `+tc.column+` = ?`, v).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Fatalf("%s = %q matches %d rows, want only its own", tc.column, v, n)
				}
			}
		})
	}
	// The status columns with a CHECK accept only the upper-case words.
	for _, q := range []string{
		`UPDATE orders SET status = 'paid' WHERE id = '` + upperID + `'`,
		`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at) VALUES ('chk', 'x', 1, 'EUR', 'APPLIED', 'applied', UTC_TIMESTAMP(6))`,
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s: accepted a lower-case status", q)
		}
	}
}

// TestEveryTextColumnIsBinary guards the schema as it grows: no column of
// any table may compare text case-insensitively (a later migration adding
// one fails here, naming it).
func TestEveryTextColumnIsBinary(t *testing.T) {
	db := open(t)
	if _, err := Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL AND COLLATION_NAME NOT LIKE '%\_bin'
		AND TABLE_NAME <> 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, column, collation string
		if err := rows.Scan(&table, &column, &collation); err != nil {
			t.Fatal(err)
		}
		t.Errorf("%s.%s has collation %s; identifiers and text are compared byte for byte (use ascii_bin or utf8mb4_bin)", table, column, collation)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestMigration2Backfills applies 00001, stores what a running system
// holds, then 00002: orders get the client of their idempotency key as
// owner, and recorded payments the outcome they were answered with.
func TestMigration2Backfills(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	p, err := provider(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	order := func(id, status string) {
		exec(t, db, `INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at)
			VALUES (?, 'c', 'EUR', 100, ?, ?, ?, ?)`, id, status, now, now, now)
		exec(t, db, `INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price) VALUES (?, 1, 's', 'n', 1, 100)`, id)
	}
	const (
		keyed   = "00000000-0000-7000-8000-000000000001" // placed with a key by "shop"
		keyless = "00000000-0000-7000-8000-000000000002" // stored without its key (a raced duplicate)
		closed  = "00000000-0000-7000-8000-000000000003"
	)
	order(keyed, "PAID")
	order(keyless, "PENDING_PAYMENT")
	order(closed, "CLOSED")
	exec(t, db, `INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ('shop', 'k1', 'h', ?, ?)`, keyed, now)
	exec(t, db, `INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ('other', 'k2', 'h', ?, ?)`, closed, now)
	pay := func(txn, id, status string) {
		exec(t, db, `INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, received_at) VALUES (?, ?, 100, 'EUR', ?, ?)`,
			txn, id, status, now)
	}
	pay("t-applied", keyed, "APPLIED")
	pay("t-double", keyed, "REFUND_REQUIRED")
	pay("t-late", closed, "REFUND_REQUIRED")
	pay("t-mismatch", keyless, "AMOUNT_MISMATCH")

	if _, err := Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{keyed: "shop", keyless: "", closed: "other"}
	for id, want := range owners {
		var got sql.NullString
		if err := db.QueryRow(`SELECT client_id FROM orders WHERE id = ?`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got.String != want || got.Valid != (want != "") {
			t.Errorf("owner of %s = %+v, want %q", id, got, want)
		}
	}
	outcomes := map[string]string{"t-applied": "APPLIED", "t-double": "ALREADY_PAID", "t-late": "ORDER_CLOSED", "t-mismatch": "AMOUNT_MISMATCH"}
	for txn, want := range outcomes {
		var got string
		if err := db.QueryRow(`SELECT outcome FROM payments WHERE provider_txn_id = ?`, txn).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("outcome of %s = %q, want %q", txn, got, want)
		}
	}
	// The foreign key is back.
	if _, err := db.Exec(`INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price)
		VALUES ('00000000-0000-7000-8000-0000000000ff', 1, 's', 'n', 1, 1)`); err == nil {
		t.Error("an item of a missing order was stored: the foreign key was not restored")
	}
	// A new payment must say its outcome.
	if _, err := db.Exec(`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, received_at)
		VALUES ('t-new', ?, 100, 'EUR', 'APPLIED', UTC_TIMESTAMP(6))`, keyed); err == nil {
		t.Error("a payment without an outcome was stored")
	}

	// Down restores 00001 as long as no case variants were stored.
	if _, err := p.DownTo(ctx, 1); err != nil {
		t.Fatalf("down to 1: %v", err)
	}
	var collation string
	if err := db.QueryRow(`SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
		AND TABLE_NAME = 'payments' AND COLUMN_NAME = 'provider_txn_id'`).Scan(&collation); err != nil {
		t.Fatal(err)
	}
	if collation != "ascii_general_ci" {
		t.Errorf("after down provider_txn_id is %s, want 00001's ascii_general_ci", collation)
	}
	if _, err := Up(ctx, db); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

// TestUpDSNOutlastsTheServiceTimeout: every answer of MySQL arrives 150 ms
// late (a fault proxy), longer than the DSN's 50 ms read timeout, as a
// table rebuild outlasts a service's mysql.timeout + 1 s. Up over a pool
// with that timeout fails with the driver's "invalid connection"; UpDSN,
// bound by its own timeout, applies every migration.
func TestUpDSNOutlastsTheServiceTimeout(t *testing.T) {
	dsn, err := mysql.ParseDSN(sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	px := faultproxy.Start(t, "mysql", dsn.Addr)
	dsn.Addr = px.Addr()
	dsn.ReadTimeout = 50 * time.Millisecond
	if err := px.Latency(faultproxy.Downstream, 150*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	short, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if _, err := Up(ctx, short); err == nil {
		t.Fatal("Up over a pool with a 50 ms read timeout succeeded against 150 ms answers: the fault did not apply")
	}

	applied, err := UpDSN(ctx, dsn.FormatDSN(), time.Minute)
	if err != nil {
		t.Fatalf("UpDSN: %v", err)
	}
	px.Heal()
	list, err := List(ctx, short)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if !m.Applied {
			t.Errorf("migration %d not applied (UpDSN applied %v)", m.Version, applied)
		}
	}
}
