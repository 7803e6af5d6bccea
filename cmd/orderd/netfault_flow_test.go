package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/internal/testenv"
)

// placeN places n orders and fails unless each is answered want.
func (s *stack) placeN(addr, prefix string, n, want int) []placed {
	s.t.Helper()
	out := make([]placed, 0, n)
	for i := range n {
		p := place(s.t, addr, fmt.Sprintf("%s-%d", prefix, i))
		if p.code != want {
			s.t.Fatalf("place %s-%d = %+v, want %d", prefix, i, p, want)
		}
		out = append(out, p)
	}
	return out
}

// notify sends one signed payment notification and returns the status and
// how long it took (a client timeout of 60 s: no answer fails the test).
func (s *stack) notify(addr, id string) (int, time.Duration) {
	s.t.Helper()
	req := testenv.PaymentRequest(s.t, "http://"+addr, webhookSecret, "txn-"+id, id)
	start := time.Now()
	res, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	took := time.Since(start)
	if err != nil {
		s.t.Fatalf("payment of %s got no answer after %s: %v", id, took, err)
	}
	res.Body.Close()
	return res.StatusCode, took
}

// waitAnnouncedOnce waits until every id was published, then checks that
// none was published twice (beyond second COMMITs the broker accepted)
// and nothing else was.
func (s *stack) waitAnnouncedOnce(ids []string) {
	s.t.Helper()
	waitFor(s.t, 60*time.Second, "every paid order announced", func() bool {
		pub := s.published()
		for _, id := range ids {
			if pub[id] == 0 {
				return false
			}
		}
		return true
	})
	// A check-back COMMIT racing the payment's fast commit makes the broker
	// write a second copy (apache/rocketmq#5574); consumers deduplicate.
	// Every copy beyond the first must be such a second COMMIT.
	dups := 0
	for _, n := range s.published() {
		dups += n - 1
	}
	if extra := s.mq.Transactions().ExtraCommits; dups != extra {
		s.t.Errorf("%d duplicate events, but the broker accepted %d second COMMITs: something else announced twice (%v)", dups, extra, s.published())
	} else if dups > 0 {
		s.t.Logf("%d duplicate events from a check-back COMMIT racing the fast commit", dups)
	}
	if got := len(s.published()); got != len(ids) {
		s.t.Errorf("%d orders announced, want the %d paid", got, len(ids))
	}
}

// TestNetworkFaultsDuringPayment: the provider's webhook while MySQL hangs
// or resets connections answers 503 (Retry-After) within mysql.timeout,
// or 200 if the payment went through; a retry after the fault applies the
// payment once or replays it, and each paid order is announced once.
func TestNetworkFaultsDuringPayment(t *testing.T) {
	for _, f := range []struct {
		name  string
		fault func(*faultproxy.Proxy) error
	}{
		{"hang", func(p *faultproxy.Proxy) error { return p.Hang(faultproxy.Both) }},
		{"answers_lost", func(p *faultproxy.Proxy) error { return p.Hang(faultproxy.Downstream) }},
		{"reset", func(p *faultproxy.Proxy) error { return p.Reset(faultproxy.Both, 0) }},
	} {
		t.Run(f.name, func(t *testing.T) {
			s := newStack(t, stackOptions{proxied: true})
			m := s.orderd()
			orders := s.placeN(m.Addr(), "pay", 10, http.StatusCreated)
			if err := f.fault(s.px.mysql); err != nil {
				t.Fatal(err)
			}
			codes := map[int]int{}
			var longest time.Duration
			for _, o := range orders {
				code, took := s.notify(m.Addr(), o.id)
				codes[code]++
				longest = max(longest, took)
			}
			s.px.healAll()
			t.Logf("payments during the fault: %v, longest %s", codes, longest.Round(time.Millisecond))
			if codes[http.StatusServiceUnavailable] == 0 {
				t.Errorf("no payment refused during the fault: %v", codes)
			}
			for code := range codes {
				if code != http.StatusOK && code != http.StatusServiceUnavailable {
					t.Errorf("payment answered %d during the fault", code)
				}
			}
			if bound := s.cfg.MySQL.Timeout + time.Second; longest > bound+boundSlack {
				t.Errorf("longest payment took %s, bound %s (+%s slack)", longest, bound, boundSlack)
			}
			ids := make([]string, 0, len(orders))
			for _, o := range orders {
				// The provider retries until it gets 200.
				deadline := time.Now().Add(30 * time.Second)
				for {
					code, _ := s.notify(m.Addr(), o.id)
					if code == http.StatusOK {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("payment of %s still %d 30s after the fault", o.id, code)
					}
					time.Sleep(200 * time.Millisecond)
				}
				if st := s.rowStatus(o.id); st != "PAID" {
					t.Fatalf("order %s is %s after its payment was accepted", o.id, st)
				}
				ids = append(ids, o.id)
			}
			var applied int
			if err := s.db.QueryRow(`SELECT COUNT(*) FROM payments WHERE status = 'APPLIED'`).Scan(&applied); err != nil || applied != len(orders) {
				t.Fatalf("APPLIED payments = %d (%v), want %d", applied, err, len(orders))
			}
			s.waitAnnouncedOnce(ids)
		})
	}
}

// TestMySQLHangDuringCheckBacks: paid orders' first check-backs arrive
// while MySQL hangs. Check-backs are answered one at a time, so each must
// stay short: they answer UNKNOWN (mysql_down within check_timeout, then
// breaker_open at once) and the broker keeps asking; once MySQL answers,
// each paid order is committed and announced once, and no unpaid order is.
func TestMySQLHangDuringCheckBacks(t *testing.T) {
	// Without the fast commit: a payment would release its event at once,
	// and this test is about the check-backs.
	s := newStack(t, stackOptions{proxied: true, env: []string{"TXORDER_FAST_COMMIT__ENABLED=false"}})
	m := s.orderd()
	orders := s.placeN(m.Addr(), "chk", 12, http.StatusCreated)
	var paid []string
	for i, o := range orders {
		if i%3 == 2 {
			continue // left unpaid
		}
		if !s.pay(m.Addr(), o.id) {
			t.Fatalf("payment of %s lost", o.id)
		}
		paid = append(paid, o.id)
	}
	before := metricValue(t, m.Addr(), `txorder_tx_check_total{answer="unknown",reason="breaker_open"}`)
	// The first check-back comes transaction_timeout (4s) after each half
	// message: hang MySQL before that.
	if err := s.px.mysql.Hang(faultproxy.Both); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "check-backs answered from the breaker while MySQL hangs", func() bool {
		return metricValue(t, m.Addr(), `txorder_tx_check_total{answer="unknown",reason="breaker_open"}`) > max(before, 0)+5
	})
	if n := len(s.published()); n != 0 {
		t.Fatalf("%d events released while MySQL hangs", n)
	}
	// check_timeout is 500ms here: none may take a second.
	slow := metricAbove(t, m.Addr(), "txorder_tx_check_duration_seconds", time.Second)
	s.px.healAll()
	if slow != 0 {
		t.Errorf("%v check-backs took over a second while MySQL hung (check_timeout %s)", slow, s.cfg.Transaction.CheckTimeout)
	}
	s.waitAnnouncedOnce(paid)
	for _, o := range orders {
		if want := map[bool]string{true: "PAID", false: "PENDING_PAYMENT"}[contains(paid, o.id)]; s.rowStatus(o.id) != want {
			t.Errorf("order %s is %s, want %s", o.id, s.rowStatus(o.id), want)
		}
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// metricAbove counts the observations of histogram name above d, which
// must be one of its bucket bounds.
func metricAbove(t testing.TB, addr, name string, d time.Duration) float64 {
	t.Helper()
	sc := scrape(t, addr) // one scrape: counts move between two
	total := metricIn(sc, name+"_count")
	under := metricIn(sc, fmt.Sprintf(`%s_bucket{le="%s"}`, name, strings.TrimSuffix(fmt.Sprint(d.Seconds()), ".0")))
	if total < 0 || under < 0 {
		t.Fatalf("no histogram %s with a bucket at %s", name, d)
	}
	return total - under
}

// spillFault is a fault on the drain's path: orders were spilled while the
// broker refused connections; the broker is back, and this fault hits the
// drainer.
type spillFault struct {
	name  string
	fault func(*proxies) error
}

// TestNetworkFaultsDuringSpillDrain: orders spilled while the broker was
// down are drained while MySQL or Redis hangs or resets, or the broker
// itself hangs. The drainer backs off (no entry dies, none is placed
// twice); after the fault every queued order is in MySQL once, and paying
// them announces each once.
func TestNetworkFaultsDuringSpillDrain(t *testing.T) {
	for _, f := range []spillFault{
		{"mysql_hang", func(p *proxies) error { return p.mysql.Hang(faultproxy.Both) }},
		{"mysql_reset", func(p *proxies) error { return p.mysql.Reset(faultproxy.Both, 0) }},
		{"redis_hang", func(p *proxies) error { return p.redis.Hang(faultproxy.Both) }},
		{"redis_reset", func(p *proxies) error { return p.redis.Reset(faultproxy.Both, 0) }},
		{"broker_hang", func(p *proxies) error { return p.broker.Hang(faultproxy.Both) }},
	} {
		t.Run(f.name, func(t *testing.T) {
			s := newStack(t, stackOptions{proxied: true})
			m := s.orderd()
			s.px.broker.Disable()
			queued := s.placeN(m.Addr(), "drain", 20, http.StatusAccepted)
			if err := f.fault(s.px); err != nil {
				t.Fatal(err)
			}
			if err := s.px.broker.Enable(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second) // the drainer meets the fault
			s.px.healAll()
			waitFor(t, 60*time.Second, "every queued order placed", func() bool {
				pending, dead := s.spillDepth(t)
				return pending == 0 && dead == 0 && s.cacheSize(t) == 0 && s.rows(t) == len(queued)
			})
			ids := make([]string, 0, len(queued))
			for _, q := range queued {
				if s.rowStatus(q.id) != "PENDING_PAYMENT" {
					t.Fatalf("queued order %s is %q", q.id, s.rowStatus(q.id))
				}
				if !s.pay(m.Addr(), q.id) {
					t.Fatalf("payment of %s lost", q.id)
				}
				ids = append(ids, q.id)
			}
			s.waitAnnouncedOnce(ids)
		})
	}
}
