package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/audit"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
)

// auditDB is a migrated database with helpers to seed orders and their
// downstream effects; env points both orderd's and fulfillmentd's
// configuration at it.
type auditDB struct {
	t   *testing.T
	db  *sql.DB
	env []string
}

func newAuditDB(t *testing.T) *auditDB {
	t.Helper()
	env := mysqlEnv(t)
	for _, kv := range env[:4] {
		env = append(env, configs.FulfillmentEnvPrefix+strings.TrimPrefix(kv, configs.EnvPrefix))
	}
	cfg, err := configs.LoadOrderd("", env[:4])
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", cfg.MySQL.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return &auditDB{t: t, db: db, env: env}
}

func (a *auditDB) exec(q string, args ...any) {
	a.t.Helper()
	if _, err := a.db.Exec(q, args...); err != nil {
		a.t.Fatal(err)
	}
}

// order inserts an order with status and returns its id.
func (a *auditDB) order(status string) string {
	a.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC()
	a.exec(`INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at)
		VALUES (?, 'c', 'EUR', 100, ?, ?, ?, ?)`, id, status, now.Add(time.Minute), now, now)
	return id
}

// apply records one application of the order by the fulfillment group
// (consumed_messages once, a shipment per call).
func (a *auditDB) apply(id string) {
	a.t.Helper()
	now := time.Now().UTC()
	a.exec(`INSERT IGNORE INTO consumed_messages (consumer_group, order_id, msg_id, consumed_at) VALUES ('fulfillment', ?, 'm', ?)`, id, now)
	a.exec(`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES (?, 'm', 'CREATED', ?)`, id, now)
}

func (a *auditDB) audit(args ...string) (int, audit.Report, string) {
	a.t.Helper()
	code, out, errOut := runTool(a.t, a.env, append([]string{"audit", "--config", "", "--fulfillment-config", "", "--no-redis", "--json"}, args...)...)
	var r audit.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		a.t.Fatalf("audit output is not a JSON report: %v\n%s\n%s", err, out, errOut)
	}
	return code, r, errOut
}

func TestAuditReportsEachBrokenInvariant(t *testing.T) {
	cases := []struct {
		name string
		seed func(a *auditDB) (accepted []string, bad string)
		want func(r audit.Report) bool
	}{
		{"lost: paid, never applied", func(a *auditDB) ([]string, string) {
			return nil, a.order("PAID")
		}, func(r audit.Report) bool { return r.Lost == 1 && len(r.LostIDs) == 1 }},
		{"duplicated: two shipments", func(a *auditDB) ([]string, string) {
			id := a.order("PAID")
			a.apply(id)
			a.apply(id)
			return nil, id
		}, func(r audit.Report) bool { return r.Duplicated == 1 && r.DuplicatedIDs[0].Shipments == 2 }},
		{"phantom: shipped but unpaid", func(a *auditDB) ([]string, string) {
			id := a.order("PENDING_PAYMENT")
			a.apply(id)
			return nil, id
		}, func(r audit.Report) bool { return r.Phantom == 1 && r.PhantomIDs[0].Status == "PENDING_PAYMENT" }},
		{"phantom: shipped but closed", func(a *auditDB) ([]string, string) {
			id := a.order("CLOSED")
			a.apply(id)
			return nil, id
		}, func(r audit.Report) bool { return r.Phantom == 1 && r.PhantomIDs[0].Status == "CLOSED" }},
		{"phantom: shipped, order absent", func(a *auditDB) ([]string, string) {
			id := uuid.NewString()
			a.apply(id)
			return nil, id
		}, func(r audit.Report) bool { return r.Phantom == 1 && r.PhantomIDs[0].Status == "ABSENT" }},
		{"absent: accepted, found nowhere", func(a *auditDB) ([]string, string) {
			id := uuid.NewString()
			return []string{a.order("PENDING_PAYMENT"), id}, id
		}, func(r audit.Report) bool { return r.Absent == 1 && r.Accepted == 2 && r.AbsentIDs[0] != "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuditDB(t)
			// A healthy background: applied, pending and closed orders.
			for range 3 {
				a.apply(a.order("PAID"))
			}
			a.order("PENDING_PAYMENT")
			a.order("CLOSED")
			accepted, bad := tc.seed(a)
			var args []string
			if accepted != nil {
				p := filepath.Join(t.TempDir(), "accepted.txt")
				if err := os.WriteFile(p, []byte("# ids\n"+strings.Join(accepted, "\n")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--accepted", p)
			}
			code, r, errOut := a.audit(args...)
			if code != 1 || r.OK || !tc.want(r) {
				t.Fatalf("audit = exit %d, report %+v; want exit 1 and the broken invariant", code, r)
			}
			if !strings.Contains(errOut, "audit failed") {
				t.Fatalf("stderr = %q, want the failure named", errOut)
			}
			body, _ := json.Marshal(r)
			if !strings.Contains(string(body), bad) {
				t.Fatalf("report does not name %s: %s", bad, body)
			}
			if r.Applied < 3 {
				t.Fatalf("applied = %d, want the 3 healthy orders", r.Applied)
			}
			// The table names it too.
			code, out, _ := runTool(t, a.env, append([]string{"audit", "--config", "", "--fulfillment-config", "", "--no-redis"}, args...)...)
			if code != 1 || !strings.Contains(out, bad) || !strings.Contains(out, "FAILED") {
				t.Fatalf("table audit = %d\n%s", code, out)
			}
		})
	}
}

func TestAuditCleanAndSettling(t *testing.T) {
	a := newAuditDB(t)
	for range 5 {
		a.apply(a.order("PAID"))
	}
	a.order("CLOSED")
	a.exec(`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at) VALUES ('t1', ?, 100, 'EUR', 'REFUND_REQUIRED', 'ORDER_CLOSED', NOW())`, uuid.NewString())
	// A reused provider transaction id is reported, and is not a failure.
	a.exec(`INSERT INTO payment_conflicts (provider_txn_id, payment_id, order_id, amount, currency, times_seen, first_seen_at, last_seen_at)
		VALUES ('t1', 1, ?, 1, 'EUR', 3, NOW(), NOW())`, uuid.NewString())
	code, r, errOut := a.audit()
	if code != 0 || !r.OK || r.Paid != 5 || r.Applied != 5 || r.Closed != 1 || r.Stored != 6 || r.RefundsRequired != 1 ||
		r.TxnReused != 1 || r.Accepted != -1 {
		t.Fatalf("clean audit = %d %+v %s", code, r, errOut)
	}
	code, out, _ := runTool(t, a.env, "audit", "--config", "", "--fulfillment-config", "", "--no-redis")
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "paid and applied") || !strings.Contains(out, "provider txn ids reused") {
		t.Fatalf("table = %d\n%s", code, out)
	}

	// A paid order applied a moment later is not lost with --settle.
	late := a.order("PAID")
	go func() {
		time.Sleep(700 * time.Millisecond) // the consumer being slow, not a wait for a condition
		_, _ = a.db.Exec(`INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES (?, 'm', 'CREATED', NOW())`, late)
	}()
	code, r, errOut = a.audit("--settle", "10s")
	if code != 0 || r.Passes < 2 || r.Applied != 6 {
		t.Fatalf("settling audit = %d %+v %s", code, r, errOut)
	}
}

// TestAuditHeldOrdersAreNotAbsent: accepted orders still in the Redis
// cache (MySQL was down) or the spill queue (RocketMQ was down) are held,
// not absent.
func TestAuditHeldOrdersAreNotAbsent(t *testing.T) {
	a := newAuditDB(t)
	rd := testenv.Redis(t)
	db := rd.NewDB(t)
	cached := uuid.Must(uuid.NewV7()).String()
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), DB: db})
	defer rdb.Close()
	if err := rdb.SAdd(context.Background(), "txorder:cache:ids", cached).Err(); err != nil {
		t.Fatal(err)
	}
	// And one in the spill queue (RocketMQ was down), as the drainer sees it.
	queued := uuid.Must(uuid.NewV7()).String()
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: "txorder:spill:stream", Values: map[string]any{"order_id": queued}}).Err(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "accepted.txt")
	if err := os.WriteFile(p, []byte(cached+"\n"+queued+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(a.env, "TXORDER_REDIS__ADDR="+rd.Addr(), fmt.Sprintf("TXORDER_REDIS__DB=%d", db))
	code, out, errOut := runTool(t, env, "audit", "--config", "", "--fulfillment-config", "", "--accepted", p, "--json")
	var r audit.Report
	_ = json.Unmarshal([]byte(out), &r)
	if code != 0 || r.Absent != 0 || r.Held["cached"] != 1 || r.Held["queued"] != 1 {
		t.Fatalf("audit = %d %+v %s", code, r, errOut)
	}
	code, _, _ = runTool(t, a.env, "audit", "--config", "", "--fulfillment-config", "", "--accepted", p, "--no-redis")
	if code != 1 {
		t.Fatalf("without the cache the order is absent: exit %d, want 1", code)
	}
}
