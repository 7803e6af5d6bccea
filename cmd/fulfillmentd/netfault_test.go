package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/order"
)

// proxies are the fault proxies in front of fulfillmentd's MySQL and
// broker (the NameServer only hands out the broker's address).
type proxies struct{ mysql, broker *faultproxy.Proxy }

// TestNetworkFaultsDuringFulfillment: ORDER_PAID events keep arriving
// while fulfillmentd's MySQL hangs or resets connections, or the broker
// hangs. Readiness answers within its probe timeout; once the fault ends
// every event is applied exactly once and none is dead-lettered.
func TestNetworkFaultsDuringFulfillment(t *testing.T) {
	for _, f := range []struct {
		name  string
		fault func(*proxies) error
	}{
		{"mysql_hang", func(p *proxies) error { return p.mysql.Hang(faultproxy.Both) }},
		{"mysql_answers_lost", func(p *proxies) error { return p.mysql.Hang(faultproxy.Downstream) }},
		{"mysql_reset", func(p *proxies) error { return p.mysql.Reset(faultproxy.Both, 0) }},
		{"broker_hang", func(p *proxies) error { return p.broker.Hang(faultproxy.Both) }},
		{"broker_reset", func(p *proxies) error { return p.broker.Reset(faultproxy.Both, 0) }},
	} {
		t.Run(f.name, func(t *testing.T) {
			px := &proxies{}
			s := newStackWith(t, px)
			m := s.fulfillmentd(nil)
			var events []order.PaidEvent
			publish := func(n int) {
				for range n {
					ev := newEvent()
					s.publish(ev)
					events = append(events, ev)
				}
			}
			publish(20)
			waitFor(t, 30*time.Second, "the first events applied", func() bool {
				return s.count(`SELECT COUNT(*) FROM consumed_messages`) >= 10
			})
			if err := f.fault(px); err != nil {
				t.Fatal(err)
			}
			publish(20)
			start := time.Now()
			code, _ := get(t, "http://"+m.Addr()+"/readyz")
			took := time.Since(start)
			t.Logf("readyz during the fault: %d in %s", code, took.Round(time.Millisecond))
			if code != http.StatusOK && code != http.StatusServiceUnavailable {
				t.Errorf("readyz = %d", code)
			}
			if took > time.Second+boundSlack {
				t.Errorf("readyz took %s during the fault", took)
			}
			time.Sleep(3 * time.Second)
			px.mysql.Heal()
			px.broker.Heal()
			publish(10)
			waitFor(t, 90*time.Second, "every event applied", func() bool {
				return s.count(`SELECT COUNT(*) FROM consumed_messages`) == len(events)
			})
			for _, ev := range events {
				if n := s.shipments(ev.OrderID); n != 1 {
					t.Errorf("order %s: %d shipments, want 1", ev.OrderID, n)
				}
			}
			if n := s.count(`SELECT COUNT(*) FROM dead_letters`); n != 0 {
				t.Errorf("%d dead letters after a fault of seconds", n)
			}
		})
	}
}

// boundSlack is what a test allows beyond a configured bound on this
// shared, slow machine.
const boundSlack = 5 * time.Second
