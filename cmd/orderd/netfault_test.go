package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/faultproxy"
)

// proxies are the fault proxies in front of orderd's dependencies
// (stackOptions.proxied). orderd reaches MySQL, Redis, the NameServer and
// the broker only through them; the test's own checks (stack.db,
// stack.cacheSize, rmqtest's direct inspection) go around them.
type proxies struct {
	mysql, redis, namesrv, broker *faultproxy.Proxy
}

func newProxies(t testing.TB, s *stack, broker *faultproxy.Proxy) *proxies {
	t.Helper()
	if err := broker.SetUpstream(s.mq.BrokerAddr()); err != nil {
		t.Fatal(err)
	}
	return &proxies{
		mysql:   faultproxy.Start(t, "mysql", s.cfg.MySQL.Addr),
		redis:   faultproxy.Start(t, "redis", s.cfg.Redis.Addr),
		namesrv: faultproxy.Start(t, "namesrv", s.mq.NameServerAddr()),
		broker:  broker,
	}
}

// withProxiedTimeouts gives a proxied stack's orderd roomier timeouts than
// the other tests': the tests run under the race detector on a shared
// machine, where a healthy dependency behind a proxy in the same process
// now and then takes a few hundred milliseconds, and the breakers would
// take that for a fault. The budget still fits the broker's transaction
// timeout (send 1s + execute 1s + Redis 1s < 4s).
func (o stackOptions) withProxiedTimeouts() stackOptions {
	if o.brokerTxTimeout == 0 {
		o.brokerTxTimeout = 4 * time.Second
	}
	if o.paymentWindow == 0 {
		// Longer than a test: no order closes at its deadline meanwhile
		// (at most 999 check intervals of 250ms, the broker's budget).
		o.paymentWindow = 4 * time.Minute
	}
	o.env = append([]string{
		"TXORDER_MYSQL__TIMEOUT=1s",
		"TXORDER_REDIS__TIMEOUT=1s",
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=1s",
		"TXORDER_TRANSACTION__CHECK_TIMEOUT=500ms",
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=" + o.brokerTxTimeout.String(),
	}, o.env...)
	return o
}

// route points orderd's configuration at the proxies.
func (p *proxies) route(cfg configs.Orderd) configs.Orderd {
	cfg.MySQL.Addr = p.mysql.Addr()
	cfg.Redis.Addr = p.redis.Addr()
	cfg.RocketMQ.NameServers = []string{p.namesrv.Addr()}
	return cfg
}

// placementBound is the longest a placement may take by configuration:
// the key claim, the half-message send, the local transaction's MySQL
// write and its cache write, and the claim's release or a spill append.
func placementBound(cfg configs.Orderd) time.Duration {
	return cfg.Redis.Timeout + cfg.RocketMQ.SendTimeout + cfg.Transaction.ExecuteTimeout + 2*cfg.Redis.Timeout
}

// boundSlack is what a test allows beyond a configured bound before it
// calls a request unbounded: generous, because the machine running the
// tests is shared and slow; the chaos scripts report the real figure.
const boundSlack = 5 * time.Second

// shot is one placement of a load.
type shot struct {
	placed
	start time.Time
	took  time.Duration
	err   error // no answer
}

// loadResult is what a faulted load did.
type loadResult struct {
	shots                []shot
	faultFrom, faultTill time.Time
}

// faultedLoad places orders from workers concurrent clients: for before,
// then with fault applied for during, then healed for after (each client
// paced to at most one request per 20ms, so a phase is bounded in count
// too). Every request has a 60 s client timeout; one that gets no answer
// is recorded with its error.
func (s *stack) faultedLoad(addr, prefix string, workers int, before, during, after time.Duration, fault func() error, heal func()) loadResult {
	t := s.t
	t.Helper()
	client := &http.Client{Timeout: 60 * time.Second}
	var (
		mu   sync.Mutex
		res  loadResult
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				start := time.Now()
				code, body, err := post(client, addr, key)
				sh := shot{placed: parsePlaced(code, body, key), start: start, took: time.Since(start), err: err}
				mu.Lock()
				res.shots = append(res.shots, sh)
				mu.Unlock()
				if rest := 20*time.Millisecond - sh.took; rest > 0 {
					time.Sleep(rest)
				}
			}
		}()
	}
	time.Sleep(before)
	res.faultFrom = time.Now()
	if err := fault(); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	time.Sleep(during)
	heal()
	res.faultTill = time.Now()
	time.Sleep(after)
	close(stop)
	wg.Wait()
	return res
}

func post(client *http.Client, addr, key string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/orders", strings.NewReader(orderBody))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

func parsePlaced(code int, body, key string) placed {
	var p placed
	p.code, p.key = code, key
	if i := strings.Index(body, `"id":"`); i >= 0 {
		p.id = body[i+6 : i+6+36]
	}
	if i := strings.Index(body, `"status":"`); i >= 0 {
		rest := body[i+10:]
		p.status = rest[:strings.IndexByte(rest, '"')]
	}
	return p
}

// summary counts answers, in the fault window and in all, and finds the
// longest request that overlapped the fault.
type summary struct {
	all, inFault map[int]int
	longest      time.Duration
	kept         []placed // 201/202
	refused      []placed // 503
}

func (r loadResult) summarize(t testing.TB) summary {
	t.Helper()
	sum := summary{all: map[int]int{}, inFault: map[int]int{}}
	for _, sh := range r.shots {
		if sh.err != nil {
			t.Errorf("placement %s got no answer after %s: %v", sh.key, sh.took, sh.err)
			continue
		}
		sum.all[sh.code]++
		end := sh.start.Add(sh.took)
		if end.After(r.faultFrom) && sh.start.Before(r.faultTill) {
			sum.inFault[sh.code]++
			sum.longest = max(sum.longest, sh.took)
		}
		switch sh.code {
		case http.StatusCreated, http.StatusAccepted:
			sum.kept = append(sum.kept, sh.placed)
		case http.StatusServiceUnavailable:
			sum.refused = append(sum.refused, sh.placed)
		default:
			t.Errorf("placement %s answered %d", sh.key, sh.code)
		}
	}
	t.Logf("answers: %v; during the fault: %v; longest request overlapping the fault: %s",
		sum.all, sum.inFault, sum.longest.Round(time.Millisecond))
	return sum
}

// checkBounded fails when a request overlapping the fault took longer than
// bound plus boundSlack.
func (sum summary) checkBounded(t testing.TB, bound time.Duration) {
	t.Helper()
	if sum.longest > bound+boundSlack {
		t.Errorf("longest request during the fault took %s, configured bound %s (+%s slack)", sum.longest, bound, boundSlack)
	}
}

// settle waits until every accepted order is in MySQL and nothing waits
// in Redis, then retries the refused ones as a client would; the rows must
// then be exactly the accepted orders plus those the retries found or
// placed (settleRefusedRetrying): none lost, none doubled. It polls gently
// (one query per check, four checks a second): a tight poll of hundreds of
// rows slows MySQL enough to be the fault itself.
func (s *stack) settle(addr string, sum summary) {
	t := s.t
	t.Helper()
	ids := make([]any, len(sum.kept))
	for i, p := range sum.kept {
		ids[i] = p.id
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		pending, dead := s.spillDepth(t)
		cached := s.cacheSize(t)
		stored := len(ids)
		if len(ids) > 0 {
			q := `SELECT COUNT(*) FROM orders WHERE id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
			if err := s.db.QueryRow(q, ids...).Scan(&stored); err != nil {
				t.Fatal(err)
			}
		}
		if pending == 0 && dead == 0 && cached == 0 && stored == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 120s: %d of %d accepted orders in MySQL, %d cached, %d queued, %d dead", stored, len(ids), cached, pending, dead)
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.settleRefusedRetrying(addr, len(sum.kept), sum.refused)
}

// settleRefusedRetrying is settleRefused for a client that honours 409
// idempotency_key_in_progress: a 503 whose outcome was unknown keeps its
// key claimed, and a retry is told to come back until MySQL can say (or
// the claim is older than 30 s).
func (s *stack) settleRefusedRetrying(addr string, accepted int, refused []placed) {
	t := s.t
	t.Helper()
	existed, placedNow := 0, 0
	for _, p := range refused {
		deadline := time.Now().Add(45 * time.Second)
		for {
			again := place(t, addr, p.key)
			if again.code == http.StatusConflict && time.Now().Before(deadline) {
				time.Sleep(time.Second)
				continue
			}
			switch again.code {
			case http.StatusOK:
				existed++
			case http.StatusCreated, http.StatusAccepted:
				placedNow++
			default:
				t.Errorf("retry of refused %s = %d", p.key, again.code)
			}
			break
		}
	}
	t.Logf("%d refused placements: %d had been recorded after all (outcome unknown), %d placed on retry", len(refused), existed, placedNow)
	waitFor(t, 60*time.Second, "orders placed on retry in MySQL", func() bool {
		return s.rows(t) >= accepted+existed+placedNow && s.cacheSize(t) == 0
	})
	if got := s.rows(t); got != accepted+existed+placedNow {
		t.Fatalf("rows = %d, want %d accepted + %d found on retry + %d placed on retry", got, accepted, existed, placedNow)
	}
}

// scrape returns orderd's /metrics.
func scrape(t testing.TB, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// metricIn is metricValue on a scrape already taken (-1: absent).
func metricIn(scrape, name string) float64 {
	for line := range strings.SplitSeq(scrape, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// placementFault is one network fault applied to one dependency while
// clients place orders.
type placementFault struct {
	name  string
	fault func(*proxies) error
	// want lists the answers the fault must produce (at least one each).
	want []int
}

// TestNetworkFaultsDuringPlacement puts each fault on one dependency for
// 3 s while 4 clients place orders: every request is answered (201, 202
// or 503) within the configured bound, and afterwards every 201/202 order
// is in MySQL exactly once and a retry of every 503 finds or places its
// order, never a second one.
func TestNetworkFaultsDuringPlacement(t *testing.T) {
	for _, f := range []placementFault{
		// MySQL stops answering, connections open: the local transaction
		// times out, the MySQL breaker opens, orders go to the cache.
		// (A 201 during the fault is only a placement that committed just
		// before it began: not required.)
		{"mysql hang", func(p *proxies) error { return p.mysql.Hang(faultproxy.Both) }, []int{202}},
		// The writes reach MySQL and commit, the answers are lost: the
		// order is cached too (the check-back's insert is idempotent).
		{"mysql answers lost", func(p *proxies) error { return p.mysql.Hang(faultproxy.Downstream) }, []int{202}},
		{"mysql reset", func(p *proxies) error { return p.mysql.Reset(faultproxy.Both, 0) }, []int{202}},
		// Redis stops answering: key claims time out until the Redis
		// breaker opens; MySQL still takes every order (201).
		{"redis hang", func(p *proxies) error { return p.redis.Hang(faultproxy.Both) }, []int{201}},
		{"redis reset", func(p *proxies) error { return p.redis.Reset(faultproxy.Both, 0) }, []int{201}},
		// The broker stops answering: sends time out, the RocketMQ
		// breaker opens, orders go to the spill queue.
		{"broker hang", func(p *proxies) error { return p.broker.Hang(faultproxy.Both) }, []int{202}},
		{"broker reset", func(p *proxies) error { return p.broker.Reset(faultproxy.Both, 0) }, []int{202}},
		// A slow MySQL: answers 200 ± 50 ms late; a placement's round
		// trips add up past execute_timeout now and then.
		{"mysql slow", func(p *proxies) error {
			return p.mysql.Latency(faultproxy.Downstream, 200*time.Millisecond, 50*time.Millisecond)
		}, nil},
		{"mysql 2s latency", func(p *proxies) error { return p.mysql.Latency(faultproxy.Downstream, 2*time.Second, 0) }, []int{202}},
		{"redis 2s latency", func(p *proxies) error { return p.redis.Latency(faultproxy.Downstream, 2*time.Second, 0) }, []int{201}},
		{"mysql 1KBps", func(p *proxies) error { return p.mysql.Bandwidth(faultproxy.Both, 1) }, nil},
		{"redis sliced", func(p *proxies) error { return p.redis.Slice(faultproxy.Both, 8, 4, time.Millisecond) }, nil},
		// Combined: MySQL hung while Redis is slow (the cache is the only
		// store, and it is slow); the broker hung while MySQL refuses
		// connections (the spill queue is the only way).
		{"mysql hang redis slow", func(p *proxies) error {
			return errors.Join(p.mysql.Hang(faultproxy.Both), p.redis.Latency(faultproxy.Downstream, 200*time.Millisecond, 50*time.Millisecond))
		}, []int{202}},
		{"broker hang mysql down", func(p *proxies) error {
			p.mysql.Disable()
			return p.broker.Hang(faultproxy.Both)
		}, []int{202}},
	} {
		t.Run(strings.ReplaceAll(f.name, " ", "_"), func(t *testing.T) {
			s := newStack(t, stackOptions{proxied: true})
			m := s.orderd()
			res := s.faultedLoad(m.Addr(), "nf", 4, time.Second, 3*time.Second, 2*time.Second,
				func() error { return f.fault(s.px) }, s.px.healAll)
			sum := res.summarize(t)
			sum.checkBounded(t, placementBound(s.px.route(s.cfg)))
			for _, code := range f.want {
				if sum.inFault[code] == 0 {
					t.Errorf("no %d answer during the fault (got %v)", code, sum.inFault)
				}
			}
			s.settle(m.Addr(), sum)
		})
	}
}

// healAll removes every fault from every proxy and enables any disabled.
func (p *proxies) healAll() {
	for _, px := range []*faultproxy.Proxy{p.mysql, p.redis, p.namesrv, p.broker} {
		px.Heal()
		if err := px.Enable(); err != nil {
			panic(err)
		}
	}
}
