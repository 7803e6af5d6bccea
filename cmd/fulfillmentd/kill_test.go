package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/audit"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
)

// process is fulfillmentd running as its own OS process, so a test can
// SIGKILL it.
// startProcess runs the fulfillmentd binary with env and waits until it is
// ready; every "already applied" line it logs adds to redelivered.
func startProcess(t *testing.T, env []string, redelivered *atomic.Int64) *testenv.Service {
	t.Helper()
	return testenv.StartService(t, binary(t, "cmd/fulfillmentd"), []string{"--config", "../../configs/fulfillmentd.yaml"},
		env, "fulfillmentd ready", func(rec testenv.LogRecord) {
			if rec.Msg == "ORDER_PAID already applied" {
				redelivered.Add(1)
			}
		})
}

// TestKilledWhileConsuming: fulfillmentd is SIGKILLed three times while it
// works through a backlog of paid orders. Messages it applied but whose
// offsets it had not committed come back to the next instance
// (redeliveries, counted from its log), are recognised, and the audit
// finds every paid order applied exactly once.
func TestKilledWhileConsuming(t *testing.T) {
	const orders, kills, step = 3000, 3, 300
	s := newStack(t)
	if _, err := migrations.Up(context.Background(), s.db); err != nil {
		t.Fatal(err)
	}
	// The order side as the order service leaves it: PAID rows, and their
	// events on the topic.
	now := time.Now().UTC()
	for range orders {
		ev := newEvent()
		if _, err := s.db.Exec(`INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at, paid_at)
			VALUES (?, 'c-1', 'EUR', 100, 'PAID', ?, ?, ?, ?)`, ev.OrderID.String(), now.Add(time.Minute), now, now, now); err != nil {
			t.Fatal(err)
		}
		s.publish(ev)
	}
	env := append(append([]string{}, s.env...),
		"TXORDER_FULFILLMENT__LOG__LEVEL=info",
		// A slower consumer, so that each instance is killed mid-backlog.
		"TXORDER_FULFILLMENT__ROCKETMQ__CONSUME_GOROUTINES=2",
		"TXORDER_FULFILLMENT__ROCKETMQ__PULL_BATCH_SIZE=8",
	)
	applied := func() int { return s.count(`SELECT COUNT(*) FROM shipments`) }
	var redelivered atomic.Int64
	for i := range kills {
		before := applied()
		p := startProcess(t, env, &redelivered)
		waitFor(t, 30*time.Second, "the instance to apply a few hundred orders", func() bool { return applied() >= before+step })
		p.Kill()
		at := applied()
		if at >= orders {
			t.Fatalf("kill %d came after the backlog was done (%d applied); not a kill while consuming", i+1, at)
		}
		t.Logf("kill %d: SIGKILL after %d applied (this instance: %d)", i+1, at, at-before)
	}
	startProcess(t, env, &redelivered)
	waitFor(t, 60*time.Second, "the last instance to finish the backlog", func() bool { return applied() >= orders })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := audit.Run(ctx, s.db, s.db, audit.Config{Group: "fulfillment", Settle: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills, %d redeliveries of applied orders recognised; audit: paid %d applied %d shipments %d lost %d duplicated %d phantom %d",
		kills, redelivered.Load(), r.Paid, r.Applied, r.Shipments, r.Lost, r.Duplicated, r.Phantom)
	if !r.OK || r.Paid != orders || r.Applied != orders || r.Shipments != orders {
		t.Fatalf("audit = %+v", r)
	}
	if redelivered.Load() == 0 {
		t.Fatal("no redelivery after three kills -9: offsets cannot all have been committed")
	}
}
