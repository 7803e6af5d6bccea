package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/audit"
	"github.com/txorder/txorder/internal/loadgen"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
)

// binary builds cmd/<name> of this module once per test run.
func binary(t *testing.T, name string) string { return testenv.Build(t, "cmd/"+name) }

// startService runs cmd/<name> with env and waits for its "<name> ready"
// log line.
func startService(t *testing.T, name string, env []string, args ...string) *testenv.Service {
	t.Helper()
	return testenv.StartService(t, binary(t, name), args, env, name+" ready", nil)
}

const (
	systemAPIKey = "load-test-key-0123456789"
	systemSecret = "load-test-webhook-secret-0123456789abc"
)

// TestThousandPaidOrdersAppliedOnce: 1,000 orders placed and paid under
// load through `ordertool load` against orderd, announced through the
// transactional producer and consumed by fulfillmentd; `ordertool audit`
// then finds applied = paid = 1,000 and nothing lost, duplicated, phantom
// or absent.
func TestThousandPaidOrdersAppliedOnce(t *testing.T) {
	const orders = 1000
	mq := rmqtest.RunT(t, rmqtest.Options{
		TransactionTimeout: 2 * time.Second, CheckInterval: 250 * time.Millisecond, CheckMax: 1000,
		DelayScale: 0.001, Topics: map[string]int{"ORDER_PAID": 4},
	})
	dsn, err := mysql.ParseDSN(sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	rd := testenv.Redis(t)
	redisDB := rd.NewDB(t)
	dbEnv := []string{"MYSQL__ADDR=" + dsn.Addr, "MYSQL__USER=" + dsn.User, "MYSQL__PASSWORD=" + dsn.Passwd, "MYSQL__DATABASE=" + dsn.DBName}
	var orderEnv, fulfillmentEnv []string
	for _, kv := range dbEnv {
		orderEnv = append(orderEnv, configs.EnvPrefix+kv)
		fulfillmentEnv = append(fulfillmentEnv, configs.FulfillmentEnvPrefix+kv)
	}
	orderEnv = append(orderEnv,
		"TXORDER_REDIS__ADDR="+rd.Addr(), fmt.Sprintf("TXORDER_REDIS__DB=%d", redisDB),
		"TXORDER_PAYMENT__WEBHOOK_SECRET="+systemSecret,
	)
	orderd := startService(t, "orderd", append(append([]string{}, orderEnv...),
		"TXORDER_HTTP__ADDR=127.0.0.1:0",
		"TXORDER_REDIS__TIMEOUT=200ms",
		"TXORDER_ROCKETMQ__NAME_SERVERS="+mq.NameServerAddr(),
		"TXORDER_ROCKETMQ__INSTANCE_NAME=orderd-"+uuid.NewString()[:8],
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=2s",
		"TXORDER_ROCKETMQ__SEND_TIMEOUT=700ms",
		"TXORDER_ROCKETMQ__CHECK_INTERVAL=250ms",
		"TXORDER_ROCKETMQ__CHECK_MAX=1000",
		// Generous for a loaded CI machine; an order that still falls back
		// to Redis (202) is swept into MySQL and paid by the retrying payer.
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=1s",
		"TXORDER_MYSQL__TIMEOUT=1s",
		"TXORDER_TRANSACTION__CACHE_SWEEP_INTERVAL=200ms",
		"TXORDER_TRANSACTION__CHECK_TIMEOUT=200ms",
		"TXORDER_ORDER__PAYMENT_WINDOW=1m",
		"TXORDER_RECONCILER__GRACE=2s",
		"TXORDER_RECONCILER__INTERVAL=500ms",
		"TXORDER_AUTH__API_KEYS=load:"+systemAPIKey,
		"TXORDER_LOG__LEVEL=info",
	), "--config", "../../configs/orderd.yaml")
	startService(t, "fulfillmentd", append(append([]string{}, fulfillmentEnv...),
		configs.FulfillmentEnvPrefix+"HTTP__ADDR=127.0.0.1:0",
		configs.FulfillmentEnvPrefix+"ROCKETMQ__NAME_SERVERS="+mq.NameServerAddr(),
		configs.FulfillmentEnvPrefix+"ROCKETMQ__INSTANCE_NAME=fulfillmentd-"+uuid.NewString()[:8],
		configs.FulfillmentEnvPrefix+"DEAD_LETTER__RETRY_INTERVAL=500ms",
	), "--config", "../../configs/fulfillmentd.yaml")

	dir := t.TempDir()
	accepted, summary := filepath.Join(dir, "accepted.txt"), filepath.Join(dir, "summary.json")
	toolEnv := append(append(append([]string{}, orderEnv...), fulfillmentEnv...), envAPIKey+"="+systemAPIKey)
	code, out, errOut := runTool(t, toolEnv, "load", "--config", "", "--url", "http://"+orderd.Addr,
		"--count", fmt.Sprint(orders), "--concurrency", "16", "--pay", "1",
		"--accepted-out", accepted, "--summary-out", summary)
	if code != 0 {
		t.Fatalf("ordertool load = %d\n%s%s", code, out, errOut)
	}
	t.Logf("ordertool load:\n%s", out)
	var s loadgen.Summary
	b, _ := os.ReadFile(summary)
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Placed != orders || s.Paid != orders || s.Accepted != orders || len(s.Timeline) == 0 {
		t.Fatalf("load summary = %+v, want %d placed, accepted and paid", s, orders)
	}
	if n := s.PlaceCodes["202"]; n > 0 {
		t.Logf("%d orders were accepted into Redis (MySQL slower than the execute timeout) and paid once swept into MySQL", n)
	}

	start := time.Now()
	code, out, errOut = runTool(t, toolEnv, "audit", "--config", "", "--fulfillment-config", "",
		"--accepted", accepted, "--settle", "40s", "--json")
	var r audit.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("audit output: %v\n%s%s", err, out, errOut)
	}
	t.Logf("audit settled in %s after %d passes: paid %d applied %d shipments %d", time.Since(start).Round(time.Millisecond), r.Passes, r.Paid, r.Applied, r.Shipments)
	if code != 0 || !r.OK || r.Paid != orders || r.Applied != orders || r.Accepted != orders || r.Shipments != orders ||
		r.Lost+r.Duplicated+r.Phantom+r.Absent != 0 {
		t.Fatalf("audit = exit %d, %+v\n%s", code, r, errOut)
	}
}
