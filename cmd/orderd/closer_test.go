package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/rmqtest"
)

// TestOrphanedOrderIsClosed: an unpaid order whose half message the broker
// discarded (orderd was down for all of its checks) gets no check-back to
// close it at its deadline. When orderd returns, the closer closes it and
// sends ROLLBACK for its half message (accepted: a discarded half message
// is still in the commit log); a late payment is then refused
// (REFUND_REQUIRED), and nothing is published.
func TestOrphanedOrderIsClosed(t *testing.T) {
	const window = time.Second
	// Coordinates kept long enough for the closer's round, which comes
	// long after the default TTL here (window + grace + interval).
	s := newStack(t, stackOptions{paymentWindow: window, brokerTxTimeout: txTimeout + time.Second, brokerCheckMax: 3,
		env: []string{"TXORDER_FAST_COMMIT__COORDINATES_TTL=2m"}})
	m := s.orderd()
	p := place(t, m.Addr(), "orphan")
	if p.code != http.StatusCreated || p.status != "PENDING_PAYMENT" {
		t.Fatalf("place = %+v", p)
	}
	placedAt := time.Now()
	if err := m.Close(); err != nil { // before the first check
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the broker to discard the half message", func() bool {
		for _, msg := range s.mq.Messages(rmqtest.CheckMaxTopic) {
			if msg.Keys == p.id {
				return true
			}
		}
		return false
	})
	// The bug this guards against: past its deadline, no half message
	// left, the order is still pending, and nothing would ever close it.
	if st := s.rowStatus(p.id); st != "PENDING_PAYMENT" || time.Since(placedAt) <= window {
		t.Fatalf("order = %s %s after placement, want PENDING_PAYMENT past its deadline", st, time.Since(placedAt))
	}
	if st := s.orderTx(); st.Pending != 0 {
		t.Fatalf("broker = %+v, want no half message left", st)
	}

	// orderd returns with a short closer grace and interval (environment,
	// through the production loader).
	var err error
	s.cfg, err = configs.LoadOrderd("../../configs/orderd.yaml", append(s.env,
		"TXORDER_CLOSER__GRACE=600ms", "TXORDER_CLOSER__INTERVAL=200ms"))
	if err != nil {
		t.Fatal(err)
	}
	again := s.orderd()
	waitFor(t, 10*time.Second, "the closer to close the order", func() bool { return s.rowStatus(p.id) == "CLOSED" })
	waitFor(t, 5*time.Second, "txorder_closer_closed_total = 1", func() bool {
		return metricValue(t, again.Addr(), "txorder_closer_closed_total") == 1
	})
	waitFor(t, 5*time.Second, "the closer's ROLLBACK accepted", func() bool {
		return metricValue(t, again.Addr(), `txorder_fastcommit_accepted_total{action="rollback"}`) == 1
	})
	if code, st := getOrder(t, again.Addr(), p.id); code != http.StatusOK || st != "CLOSED" {
		t.Fatalf("GET = %d %s, want CLOSED", code, st)
	}
	if s.pay(again.Addr(), p.id) || s.paymentStatus(p.id) != "REFUND_REQUIRED" {
		t.Fatalf("the closed order took a payment (recorded %q), want 409 and REFUND_REQUIRED", s.paymentStatus(p.id))
	}
	if n := len(s.mq.Messages(topic)); n != 0 || s.orderTx().Pending != 0 {
		t.Fatalf("%d ORDER_PAID messages, broker %+v; want none", n, s.orderTx())
	}
}

// The closer section of the shipped file is DefaultOrderd's, and a grace
// that does not leave the check-back two intervals is refused by name.
func TestCloserConfig(t *testing.T) {
	env := []string{"TXORDER_AUTH__API_KEYS=demo:" + testKey}
	cfg, err := configs.LoadOrderd("../../configs/orderd.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if def := configs.DefaultOrderd().Closer; cfg.Closer != def {
		t.Fatalf("orderd.yaml closer = %+v, DefaultOrderd = %+v", cfg.Closer, def)
	}
	if g := cfg.Closer.GraceOr(cfg.RocketMQ.CheckInterval); g != 3*cfg.RocketMQ.CheckInterval {
		t.Fatalf("default grace = %s, want 3 × check_interval %s", g, cfg.RocketMQ.CheckInterval)
	}
	_, err = configs.LoadOrderd("../../configs/orderd.yaml", append(env, "TXORDER_CLOSER__GRACE=60s"))
	if err == nil || !strings.Contains(err.Error(), "closer.grace: 1m0s must be more than two rocketmq.check_interval (30s)") {
		t.Fatalf("grace of two intervals: err = %v, want one naming closer.grace", err)
	}
	if _, err := configs.LoadOrderd("../../configs/orderd.yaml", append(env, "TXORDER_CLOSER__GRACE=61s")); err != nil {
		t.Fatalf("grace just over two intervals: %v", err)
	}
}
