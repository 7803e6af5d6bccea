package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/audit"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
)

// counterOf reads one unlabelled counter from a process's /metrics (0
// while it is not exported yet, -1 when the process does not answer).
func counterOf(addr, name string) int {
	_, body, err := getBody("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	return max(int(metric(body, name)), 0)
}

func getBody(url string) (int, string, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// TestTwoReplicasOneKilled: two fulfillmentd processes in one consumer
// group share a backlog of paid orders spread over two broker groups. One
// is SIGKILLed mid-backlog: the other takes over its queues (rebalance)
// and finishes the whole backlog alone, recognising the messages the dead
// one had applied but not yet acknowledged (redeliveries: "already
// applied", no second shipment). Restarted, the killed one gets queues
// again and applies new events. The audit finds every paid order applied
// exactly once.
func TestTwoReplicasOneKilled(t *testing.T) {
	const backlog, later = 2000, 200
	s := newStack(t)
	b := rmqtest.RunT(t, rmqtest.Options{NoNameServer: true, RegisterTo: []string{s.mq.NameServerAddr()},
		BrokerName: "broker-b", DelayScale: 0.001, Topics: map[string]int{topic: 4}})
	if _, err := migrations.Up(context.Background(), s.db); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		now := time.Now().UTC()
		for i := range n {
			ev := newEvent()
			if _, err := s.db.Exec(`INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at, paid_at)
				VALUES (?, 'c-1', 'EUR', 100, 'PAID', ?, ?, ?, ?)`, ev.OrderID.String(), now.Add(time.Minute), now, now, now); err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(ev)
			broker := s.mq
			if i%2 == 1 {
				broker = b
			}
			if _, err := broker.Publish(topic, i%4, body, map[string]string{"KEYS": ev.OrderID.String()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(backlog)

	redelivered := make([]atomic.Int64, 2)
	start := func(k int) *testenv.Service {
		env := append(append([]string{}, s.env...),
			"TXORDER_FULFILLMENT__LOG__LEVEL=info",
			fmt.Sprintf("TXORDER_FULFILLMENT__ROCKETMQ__INSTANCE_NAME=fulfillmentd-%d-%s", k+1, uuid.NewString()[:8]),
			// Slower consumers, so that the kill falls mid-backlog.
			"TXORDER_FULFILLMENT__ROCKETMQ__CONSUME_GOROUTINES=2",
			"TXORDER_FULFILLMENT__ROCKETMQ__PULL_BATCH_SIZE=8",
		)
		return startProcess(t, env, &redelivered[k])
	}
	applied := func() int { return s.count(`SELECT COUNT(*) FROM shipments`) }
	p := []*testenv.Service{start(0), start(1)}
	waitFor(t, 60*time.Second, "both replicas applying", func() bool {
		return counterOf(p[0].Addr, "txorder_fulfillment_applied_total") > 50 &&
			counterOf(p[1].Addr, "txorder_fulfillment_applied_total") > 50
	})
	beforeKill := [2]int{counterOf(p[0].Addr, "txorder_fulfillment_applied_total"), counterOf(p[1].Addr, "txorder_fulfillment_applied_total")}
	p[1].Kill()
	if at := applied(); at >= backlog {
		t.Fatalf("the kill came after the backlog was done (%d applied)", at)
	}
	waitFor(t, 120*time.Second, "the survivor to finish the whole backlog alone", func() bool { return applied() >= backlog })
	survivor := counterOf(p[0].Addr, "txorder_fulfillment_applied_total")
	t.Logf("applied before the kill: %v; the survivor applied %d more after it (the dead one's queues too); %d redeliveries recognised",
		beforeKill, survivor-beforeKill[0], redelivered[0].Load())
	if redelivered[0].Load() == 0 {
		t.Error("the survivor saw no redelivery: the killed replica cannot have acknowledged everything it applied")
	}

	p[1] = start(1)
	publish(later)
	waitFor(t, 60*time.Second, "the new events applied", func() bool { return applied() >= backlog+later })
	waitFor(t, 30*time.Second, "the restarted replica to get queues and apply some", func() bool {
		return counterOf(p[1].Addr, "txorder_fulfillment_applied_total")+counterOf(p[1].Addr, "txorder_fulfillment_duplicates_total") > 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := audit.Run(ctx, s.db, s.db, audit.Config{Group: "fulfillment", Settle: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Paid != backlog+later || r.Applied != backlog+later || r.Shipments != backlog+later {
		t.Fatalf("audit = %+v", r)
	}
}
