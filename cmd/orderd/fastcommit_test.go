package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/listener"
)

// fulfillment runs the real fulfillment handler on the stack's database
// behind a real push consumer, and counts deliveries per order.
type fulfillment struct {
	s          *stack
	mu         sync.Mutex
	deliveries map[string]int
}

func (s *stack) fulfillment() *fulfillment {
	s.t.Helper()
	fs, err := listener.NewFulfillmentStore(s.db, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	dead, err := listener.NewDeadLetterStore(s.db, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	h, err := listener.NewFulfillment(fs, dead, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), listener.FulfillmentConfig{})
	if err != nil {
		s.t.Fatal(err)
	}
	f := &fulfillment{s: s, deliveries: map[string]int{}}
	c, err := rocketmq.NewPushConsumer(
		consumer.WithNsResolver(primitive.NewPassthroughResolver([]string{s.mq.NameServerAddr()})),
		consumer.WithGroupName(h.Group()),
		consumer.WithInstance("test-fulfillment-"+uuid.NewString()[:8]),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	)
	if err != nil {
		s.t.Fatal(err)
	}
	err = c.Subscribe(topic, consumer.MessageSelector{}, func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		res, err := h.Consume(ctx, msgs...)
		if res == consumer.ConsumeSuccess {
			f.mu.Lock()
			for _, m := range msgs {
				f.deliveries[m.GetKeys()]++
			}
			f.mu.Unlock()
		}
		return res, err
	})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = c.Shutdown() })
	return f
}

func (f *fulfillment) delivered(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deliveries[id]
}

// shipments returns the shipment rows of the order.
func (s *stack) shipments(id string) int {
	var n int
	_ = s.db.QueryRow(`SELECT COUNT(*) FROM shipments WHERE order_id = ?`, id).Scan(&n)
	return n
}

// redis is a client on orderd's Redis database.
func (s *stack) redis() *redis.Client {
	s.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	s.t.Cleanup(func() { rdb.Close() })
	return rdb
}

func (s *stack) coordinatesKey(id string) string { return s.cfg.Redis.KeyPrefix + "halfmsg:" + id }

// waitCoordinates waits until the placement's coordinates are in Redis.
// placeRecorded places n orders (201 each) and waits until each one's
// half-message coordinates are in Redis, so a payment can fast-commit it;
// it returns their ids.
func (s *stack) placeRecorded(addr, prefix string, n int) []string {
	s.t.Helper()
	rdb := s.redis()
	ids := make([]string, 0, n)
	for _, p := range s.placeN(addr, prefix, n, http.StatusCreated) {
		s.waitCoordinates(rdb, p.id)
		ids = append(ids, p.id)
	}
	return ids
}

func (s *stack) waitCoordinates(rdb *redis.Client, id string) {
	s.t.Helper()
	waitFor(s.t, 5*time.Second, "the half message's coordinates in Redis", func() bool {
		n, err := rdb.Exists(context.Background(), s.coordinatesKey(id)).Result()
		return err == nil && n == 1
	})
}

// TestPaymentReleasesEventAtOnce: with a broker whose first check-back
// comes only after a minute, every paid order is shipped within seconds:
// the payment committed its half message itself.
func TestPaymentReleasesEventAtOnce(t *testing.T) {
	s := newStack(t, stackOptions{brokerTxTimeout: time.Minute})
	m := s.orderd()
	f := s.fulfillment()
	const n = 5
	ids := s.placeRecorded(m.Addr(), "fast", n)
	paidAt := time.Now()
	for _, id := range ids {
		if !s.pay(m.Addr(), id) {
			t.Fatalf("pay %s refused", id)
		}
	}
	waitFor(t, 20*time.Second, "every paid order shipped", func() bool {
		for _, id := range ids {
			if s.shipments(id) != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("%d orders paid → shipped in %s, with no check-back before %s", n, time.Since(paidAt).Round(time.Millisecond), time.Minute)
	s.announcedOnce(t, ids)
	if got := metricValue(t, m.Addr(), `txorder_fastcommit_accepted_total{action="commit"}`); got != n {
		t.Errorf("fast commits accepted = %v, want %d", got, n)
	}
	if st := s.orderTx(); st.Pending != 0 || st.Committed != n {
		t.Errorf("broker = %+v, want %d committed, none pending", st, n)
	}
	for _, id := range ids {
		if f.delivered(id) < 1 {
			t.Errorf("order %s shipped but its delivery not counted", id)
		}
	}
}

// TestPaymentAfterCheckBacks: the broker re-puts the half message at
// every check and only a COMMIT naming the latest copy ends the
// transaction. Each check-back orderd answers UNKNOWN moves the recorded
// coordinates to that copy, so the payment's fast commit ends the
// transaction: no further check, no second copy of the event.
func TestPaymentAfterCheckBacks(t *testing.T) {
	s := newStack(t, stackOptions{brokerTxTimeout: 100 * time.Millisecond, brokerCheckInterval: time.Hour})
	m := s.orderd()
	rdb := s.redis()
	p := place(t, m.Addr(), "paid-after-checks")
	if p.code != http.StatusCreated {
		t.Fatalf("place = %+v", p)
	}
	s.waitCoordinates(rdb, p.id)
	waitFor(t, 5*time.Second, "the half message older than the broker's transaction timeout", func() bool {
		live := s.mq.PendingHalfMessages()
		return len(live) == 1 && time.Since(live[0].BornTimestamp) > 300*time.Millisecond
	})
	for i := 1; i <= 3; i++ {
		s.mq.CheckNow()
		waitFor(t, 5*time.Second, "the check-back to move the coordinates to the live copy", func() bool {
			live := s.mq.PendingHalfMessages()
			moved, err := rdb.Get(context.Background(), s.cfg.Redis.KeyPrefix+"halfmsg:live:"+p.id).Result()
			return len(live) == 1 && live[0].Properties["TRANSACTION_CHECK_TIMES"] == fmt.Sprint(i) && err == nil &&
				moved == fmt.Sprintf("%d\n%d", live[0].QueueOffset, live[0].CommitLogOffset)
		})
	}
	if !s.pay(m.Addr(), p.id) {
		t.Fatal("payment refused")
	}
	waitFor(t, 5*time.Second, "the fast commit to end the transaction", func() bool {
		return s.mq.Transactions().Committed == 1 && s.orderTx().Pending == 0
	})
	for range 3 {
		s.mq.CheckNow() // nothing left to check
	}
	if got := counterValue(t, m.Addr(), `txorder_tx_check_total{answer="commit",reason="paid"}`); got != 0 {
		t.Fatalf("%v check-back COMMITs after the fast commit, want none", got)
	}
	if k := s.published()[p.id]; k != 1 || s.mq.Transactions().ExtraCommits != 0 {
		t.Fatalf("%d events, %d extra commits; want one event", k, s.mq.Transactions().ExtraCommits)
	}
}

// TestCoordinatesMissing: the placement's coordinates are gone from Redis
// (expired, or Redis lost them); the payment's fast commit is skipped and
// the check-back releases the event, once.
func TestCoordinatesMissing(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	rdb := s.redis()
	p := place(t, m.Addr(), "no-coordinates")
	if p.code != http.StatusCreated {
		t.Fatalf("place = %+v", p)
	}
	s.waitCoordinates(rdb, p.id)
	if err := rdb.Del(context.Background(), s.coordinatesKey(p.id)).Err(); err != nil {
		t.Fatal(err)
	}
	if !s.pay(m.Addr(), p.id) {
		t.Fatal("payment refused")
	}
	waitFor(t, 5*time.Second, "the skip counted", func() bool {
		return metricValue(t, m.Addr(), `txorder_fastcommit_skipped_total{action="commit",reason="no_coordinates"}`) == 1
	})
	waitFor(t, 15*time.Second, "the check-back to release the event", func() bool { return s.published()[p.id] >= 1 })
	if got := counterValue(t, m.Addr(), `txorder_fastcommit_sent_total{action="commit"}`); got > 0 {
		t.Errorf("%v fast commits sent without coordinates", got)
	}
	if got := metricValue(t, m.Addr(), `txorder_tx_check_total{answer="commit",reason="paid"}`); got < 1 {
		t.Errorf("check-back commits = %v, want the check-back to have released it", got)
	}
	s.announcedOnce(t, []string{p.id})
}

// TestBrokerRestartedBetweenPlacementAndPayment: the broker goes away after
// the placement. While it is down the fast commit fails (no route) and the
// check-back releases the event once the broker is back; after a restart
// the fast commit dials anew. Either way each order is announced once.
func TestBrokerRestartedBetweenPlacementAndPayment(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()

	// Down at payment time.
	down := place(t, m.Addr(), "broker-down")
	if down.code != http.StatusCreated {
		t.Fatalf("place = %+v", down)
	}
	s.waitCoordinates(s.redis(), down.id)
	s.mq.StopBroker()
	if !s.pay(m.Addr(), down.id) {
		t.Fatal("payment refused while the broker is down")
	}
	waitFor(t, 10*time.Second, "the fast commit to fail", func() bool {
		return counterValue(t, m.Addr(), `txorder_fastcommit_failed_total{action="commit",reason="no_route"}`)+
			counterValue(t, m.Addr(), `txorder_fastcommit_failed_total{action="commit",reason="unreachable"}`) >= 1
	})
	if len(s.published()) != 0 {
		t.Fatal("published while the broker was down")
	}
	if err := s.mq.StartBroker(); err != nil {
		t.Fatal(err)
	}
	// The restarted broker knows the producer again at its next send or
	// heartbeat (every 30 s in the Go client); a placement is the send.
	if p := place(t, m.Addr(), "after-restart"); p.code != http.StatusCreated {
		t.Fatalf("place after the restart = %+v", p)
	}
	waitFor(t, 15*time.Second, "the check-back to release the event", func() bool { return s.published()[down.id] >= 1 })

	// Restarted between placement and payment.
	restarted := place(t, m.Addr(), "broker-restarted")
	if restarted.code != http.StatusCreated {
		t.Fatalf("place = %+v", restarted)
	}
	s.waitCoordinates(s.redis(), restarted.id)
	s.mq.StopBroker()
	if err := s.mq.StartBroker(); err != nil {
		t.Fatal(err)
	}
	accepted := counterValue(t, m.Addr(), `txorder_fastcommit_accepted_total{action="commit"}`)
	if !s.pay(m.Addr(), restarted.id) {
		t.Fatal("payment refused after the broker restart")
	}
	if p := place(t, m.Addr(), "after-second-restart"); p.code != http.StatusCreated {
		t.Fatalf("place after the restart = %+v", p)
	}
	waitFor(t, 15*time.Second, "the event released", func() bool { return s.published()[restarted.id] >= 1 })
	how := "the check-back"
	if counterValue(t, m.Addr(), `txorder_fastcommit_accepted_total{action="commit"}`) > accepted {
		how = "the fast commit on a new connection"
	}
	t.Logf("after the broker restart the event was released by %s", how)
	s.announcedOnce(t, []string{down.id, restarted.id})
}

// TestFastCommitRacingCheckBack: a check-back that reaches orderd after
// the fast commit (the broker's check service read the half message
// before the commit's op message) is answered COMMIT as well, and the
// broker writes a second copy. The consumer gets the event twice and ships
// once; the duplicate is counted.
func TestFastCommitRacingCheckBack(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	f := s.fulfillment()
	rdb := s.redis()
	const n = 5
	var ids []string
	for i := range n {
		p := place(t, m.Addr(), fmt.Sprintf("race-check-%d", i))
		if p.code != http.StatusCreated {
			t.Fatalf("place = %+v", p)
		}
		s.waitCoordinates(rdb, p.id)
		if !s.pay(m.Addr(), p.id) {
			t.Fatalf("pay %s refused", p.id)
		}
		ids = append(ids, p.id)
	}
	waitFor(t, 10*time.Second, "every fast commit accepted", func() bool {
		return metricValue(t, m.Addr(), `txorder_fastcommit_accepted_total{action="commit"}`) == n
	})
	const commitSeries = `txorder_tx_check_total{answer="commit",reason="paid"}`
	const pendingSeries = `txorder_tx_check_total{answer="unknown",reason="pending"}`
	for _, id := range ids {
		// One late check at a time, each answered before the next (two in
		// flight would write two more copies). Until orderd's state view
		// sees the payment (it refreshes paid orders every 500ms) a check
		// answers UNKNOWN; then COMMIT.
		for attempt := 0; s.published()[id] < 2; attempt++ {
			if attempt == 50 {
				t.Fatalf("no late check of %s answered COMMIT", id)
			}
			commits, pendings := counterValue(t, m.Addr(), commitSeries), counterValue(t, m.Addr(), pendingSeries)
			if !s.mq.CheckHalf(id) {
				t.Fatalf("no check sent for %s", id)
			}
			waitFor(t, 5*time.Second, "the late check answered", func() bool {
				return counterValue(t, m.Addr(), commitSeries) > commits || counterValue(t, m.Addr(), pendingSeries) > pendings
			})
			if counterValue(t, m.Addr(), commitSeries) > commits {
				waitFor(t, 5*time.Second, "the second copy written", func() bool { return s.published()[id] >= 2 })
			} else {
				time.Sleep(100 * time.Millisecond) // pace the next check while the view catches up
			}
		}
	}
	waitFor(t, 20*time.Second, "both copies of every event consumed", func() bool {
		for _, id := range ids {
			if f.delivered(id) < 2 {
				return false
			}
		}
		return true
	})
	dups := s.announcedOnce(t, ids)
	if dups != n {
		t.Errorf("%d duplicates, want %d (one per order)", dups, n)
	}
	for _, id := range ids {
		if got := s.shipments(id); got != 1 {
			t.Errorf("order %s: %d shipments from %d deliveries, want 1", id, got, f.delivered(id))
		}
	}
	waitFor(t, 5*time.Second, "the duplicates counted by orderd", func() bool {
		return metricValue(t, m.Addr(), "txorder_tx_check_commit_after_fast_total") == n
	})
}

// The fast_commit section of the shipped file is DefaultOrderd's, and
// coordinates that would expire inside the payment window are refused.
func TestFastCommitConfig(t *testing.T) {
	env := []string{"TXORDER_AUTH__API_KEYS=demo:" + testKey}
	cfg, err := configs.LoadOrderd("../../configs/orderd.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if def := configs.DefaultOrderd().FastCommit; cfg.FastCommit != def {
		t.Fatalf("orderd.yaml fast_commit = %+v, DefaultOrderd = %+v", cfg.FastCommit, def)
	}
	if ttl := cfg.FastCommit.CoordinatesTTLOr(cfg); ttl != 5*time.Minute+90*time.Second+30*time.Second+30*time.Second {
		t.Fatalf("default coordinates TTL = %s, want window 5m + closer grace 1m30s + closer interval 30s + check interval 30s", ttl)
	}
	_, err = configs.LoadOrderd("../../configs/orderd.yaml", append(env, "TXORDER_FAST_COMMIT__COORDINATES_TTL=1m"))
	if err == nil || !strings.Contains(err.Error(), "fast_commit.coordinates_ttl: 1m0s is shorter than order.payment_window 5m0s") {
		t.Fatalf("TTL inside the window: err = %v, want one naming fast_commit.coordinates_ttl", err)
	}
}

// counterValue is metricValue with a series not exported yet read as 0.
func counterValue(t testing.TB, addr, name string) float64 {
	t.Helper()
	return max(0, metricValue(t, addr, name))
}
