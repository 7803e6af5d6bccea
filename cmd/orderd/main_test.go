package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
)

var (
	sharedMySQL *testenv.MySQLServer
	sharedRedis *testenv.RedisServer
)

func TestMain(m *testing.M) {
	// The real rocketmq-client-go has data races of its own; ignore only
	// those (see rmqtest.ClientRaceSuppressions).
	rmqtest.SuppressClientRaces()
	os.Exit(testenv.RunMain(m, &sharedMySQL, &sharedRedis))
}

const (
	testKey       = "orderd-test-key-0123456789"
	webhookSecret = "orderd-test-webhook-secret-0123456789"
	topic         = "ORDER_PAID"
	// Check-backs every 250ms, the first 2s after a half message (the
	// local transaction's budget, send 1s + MySQL 600ms + Redis 300ms, must
	// fit before it).
	checkInterval = 250 * time.Millisecond
	txTimeout     = 2 * time.Second
)

// stack is orderd's world for one test: rmqtest, MariaDB and Redis (shared
// ones, or private ones the test may kill), and the configuration orderd
// loads through the same loader production uses.
type stack struct {
	t   testing.TB
	mq  *rmqtest.Server
	my  *testenv.MySQLServer
	rd  *testenv.RedisServer
	cfg configs.Orderd
	db  *sql.DB
	env []string
	px  *proxies // with stackOptions.proxied
	// brokers are further broker groups (addBroker) beside mq, with mq's
	// transaction timeout and check interval.
	brokers             []*rmqtest.Server
	brokerTxTimeout     time.Duration
	brokerCheckInterval time.Duration
}

type stackOptions struct {
	privateMySQL, privateRedis bool
	paymentWindow              time.Duration
	// brokerTxTimeout is rmqtest's TransactionTimeout (default txTimeout).
	brokerTxTimeout time.Duration
	// brokerCheckMax is rmqtest's CheckMax (default 1000, what orderd is told).
	brokerCheckMax int
	// brokerCheckInterval is rmqtest's CheckInterval (default checkInterval,
	// what orderd is told); an hour leaves the rounds to CheckNow.
	brokerCheckInterval time.Duration
	// env overrides orderd's environment.
	env []string
	// proxied puts a fault proxy in front of MySQL, Redis, the NameServer
	// and the broker (stack.px); orderd goes through them, the test's own
	// checks do not.
	proxied bool
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, my: sharedMySQL, rd: sharedRedis}
	if o.privateMySQL {
		s.my = testenv.MySQL(t)
	}
	if o.privateRedis {
		s.rd = testenv.Redis(t)
	}
	if o.proxied {
		// First: its longer payment window must not be the default's.
		o = o.withProxiedTimeouts()
	}
	if o.paymentWindow == 0 {
		o.paymentWindow = time.Minute
	}
	if o.brokerTxTimeout == 0 {
		o.brokerTxTimeout = txTimeout
	}
	if o.brokerCheckMax == 0 {
		o.brokerCheckMax = 1000
	}
	if o.brokerCheckInterval == 0 {
		o.brokerCheckInterval = checkInterval
	}
	s.brokerTxTimeout, s.brokerCheckInterval = o.brokerTxTimeout, o.brokerCheckInterval
	mqOpts := rmqtest.Options{
		TransactionTimeout: o.brokerTxTimeout, CheckInterval: o.brokerCheckInterval, CheckMax: o.brokerCheckMax,
		Topics: map[string]int{topic: 4},
	}
	var brokerProxy *faultproxy.Proxy
	if o.proxied {
		// The broker must advertise the proxy (clients take its address
		// from the route); the proxy learns the broker's once it listens.
		brokerProxy = faultproxy.Start(t, "broker", "127.0.0.1:1")
		mqOpts.BrokerAdvertiseAddr = brokerProxy.Addr()
	}
	s.mq = rmqtest.RunT(t, mqOpts)
	dsn, err := mysql.ParseDSN(s.my.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	s.env = []string{
		"TXORDER_HTTP__ADDR=127.0.0.1:0",
		// No load balancer to wait for (TestReadinessDownBeforeListenerCloses sets one).
		"TXORDER_HTTP__DRAIN_DELAY=0s",
		"TXORDER_MYSQL__ADDR=" + dsn.Addr,
		"TXORDER_MYSQL__USER=" + dsn.User,
		"TXORDER_MYSQL__PASSWORD=" + dsn.Passwd,
		"TXORDER_MYSQL__DATABASE=" + dsn.DBName,
		"TXORDER_MYSQL__TIMEOUT=600ms",
		"TXORDER_REDIS__ADDR=" + s.rd.Addr(),
		fmt.Sprintf("TXORDER_REDIS__DB=%d", s.rd.NewDB(t)),
		"TXORDER_REDIS__TIMEOUT=300ms",
		"TXORDER_ROCKETMQ__NAME_SERVERS=" + s.mq.NameServerAddr(),
		"TXORDER_ROCKETMQ__INSTANCE_NAME=" + "orderd-" + uuid.NewString()[:8],
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=" + txTimeout.String(),
		"TXORDER_ROCKETMQ__CHECK_INTERVAL=" + checkInterval.String(),
		"TXORDER_ROCKETMQ__CHECK_MAX=1000",
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=600ms",
		"TXORDER_TRANSACTION__CHECK_TIMEOUT=200ms",
		"TXORDER_TRANSACTION__BREAKER_OPEN_FOR=200ms",
		"TXORDER_TRANSACTION__CACHE_SWEEP_INTERVAL=200ms",
		"TXORDER_ORDER__PAYMENT_WINDOW=" + o.paymentWindow.String(),
		"TXORDER_AUTH__API_KEYS=demo:" + testKey,
		"TXORDER_AUTH__ADMIN_KEYS=ops:" + adminKey,
		"TXORDER_PAYMENT__WEBHOOK_SECRET=" + webhookSecret,
		"TXORDER_ROCKETMQ__SEND_TIMEOUT=1s",
		"TXORDER_SPILL__CLAIM_IDLE=2s",
		"TXORDER_SPILL__BACKOFF_MIN=50ms",
		"TXORDER_SPILL__BACKOFF_MAX=300ms",
		"TXORDER_SPILL__BREAKER_OPEN_FOR=300ms",
		"TXORDER_RECONCILER__GRACE=5s",
		"TXORDER_RECONCILER__INTERVAL=200ms",
		"TXORDER_LOG__LEVEL=debug",
		// Bursts of hundreds of placements are what these tests make;
		// TestRateLimitPerClient sets its own limits.
		"TXORDER_LIMITS__RATE=100000",
		"TXORDER_LIMITS__BURST=100000",
	}
	s.env = append(s.env, o.env...)
	s.cfg, err = configs.LoadOrderd("../../configs/orderd.yaml", s.env)
	if err != nil {
		t.Fatal(err)
	}
	s.db, err = sql.Open("mysql", s.cfg.MySQL.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	if o.proxied {
		s.px = newProxies(t, s, brokerProxy)
	}
	return s
}

// orderd opens an orderd on the stack; its log goes to the test log when
// the test fails.
func (s *stack) orderd() *Main {
	s.t.Helper()
	cfg := s.cfg
	if s.px != nil {
		cfg = s.px.route(cfg)
	}
	m := NewMain(cfg, slog.New(slog.NewTextHandler(testenv.LogWriter(s.t), &slog.HandlerOptions{Level: testLogLevel()})))
	if err := m.Open(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = m.Close() })
	return m
}

const orderBody = `{"customer_id":"c-1","currency":"EUR","items":[{"sku":"S","name":"Widget","quantity":1,"unit_price":100}]}`

type placed struct {
	code   int
	id     string
	status string
	key    string
}

func place(t testing.TB, addr, key string) placed {
	t.Helper()
	code, raw := placeRaw(t, addr, key)
	var body struct{ ID, Status string }
	_ = json.Unmarshal([]byte(raw), &body)
	return placed{code: code, id: body.ID, status: body.Status, key: key}
}

// placeRaw posts orderBody with key and returns the status and body.
func placeRaw(t testing.TB, addr, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/orders", strings.NewReader(orderBody))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func getOrder(t testing.TB, addr, id string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/orders/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct{ Status string }
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body.Status
}

// rowStatus returns the order's status in MySQL, or "" when absent.
func (s *stack) rowStatus(id string) string {
	var st string
	if err := s.db.QueryRow(`SELECT status FROM orders WHERE id = ?`, id).Scan(&st); err != nil {
		return ""
	}
	return st
}

// pay sends a signed payment notification for the order's full amount, as
// the provider would, and reports whether it was applied (the order is now
// PAID). A payment that lost to the deadline answers 409 and is recorded as
// REFUND_REQUIRED.
func (s *stack) pay(addr, id string) bool {
	s.t.Helper()
	res, err := http.DefaultClient.Do(testenv.PaymentRequest(s.t, "http://"+addr, webhookSecret, "txn-"+id, id))
	if err != nil {
		s.t.Error(err)
		return false
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusConflict:
		return false
	}
	b, _ := io.ReadAll(res.Body)
	s.t.Errorf("payment of %s = %d %s", id, res.StatusCode, b)
	return false
}

// paymentStatus returns the recorded status of the order's payment, or "".
func (s *stack) paymentStatus(id string) string {
	var st string
	_ = s.db.QueryRow(`SELECT status FROM payments WHERE order_id = ?`, id).Scan(&st)
	return st
}

// txCounts is the broker's view of the orders' transactions; the probe
// transactions of Placer.WarmUp (rolled back at once) are left out.
type txCounts struct{ Pending, Committed, RolledBack int }

func (s *stack) orderTx() txCounts {
	isOrder := func(key string) bool { return !strings.HasPrefix(key, "txorder-warmup-") }
	var c txCounts
	// Every check re-puts a copy of the half message, with the same id.
	halves := map[string]bool{}
	for _, m := range s.mq.Messages(rmqtest.HalfTopic) {
		if isOrder(m.Keys) {
			halves[m.MsgID] = true
		}
	}
	all := len(halves)
	for _, m := range s.mq.PendingHalfMessages() {
		if isOrder(m.Keys) {
			c.Pending++
		}
	}
	c.Committed = len(s.published()) // a second COMMIT writes a second copy: count orders
	c.RolledBack = all - c.Pending - c.Committed
	return c
}

// announcedOnce checks that every id was announced, and that each second
// copy of an event was written by the broker for a second COMMIT of the
// same half message (a check-back racing the fast commit: rmqtest's
// ExtraCommits), never by a second half message or a republish. It
// returns the number of duplicates, which consumers absorb.
func (s *stack) announcedOnce(t testing.TB, ids []string) int {
	t.Helper()
	pub := s.published()
	dups := 0
	for _, k := range pub {
		dups += k - 1
	}
	for _, id := range ids {
		if pub[id] == 0 {
			t.Errorf("order %s was never announced", id)
		}
	}
	if extra := s.mq.Transactions().ExtraCommits; dups != extra {
		t.Errorf("%d duplicate events, but the broker accepted %d second COMMITs: something else announced twice", dups, extra)
	}
	if dups > 0 {
		t.Logf("%d duplicate events from a check-back COMMIT racing the fast commit", dups)
	}
	return dups
}

// published counts committed ORDER_PAID messages per key.
func (s *stack) published() map[string]int {
	out := map[string]int{}
	for _, m := range s.mq.Messages(topic) {
		out[m.Keys]++
	}
	return out
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForDrain waits until remaining() is 0. It fails when remaining has
// not gone down for stall, or after most in all: a drain that is stuck
// fails as fast as under a fixed bound, while one that is merely slow (a
// loaded machine, where each commit can take a hundred milliseconds and
// more) is not mistaken for a stuck one. A negative remaining (a read
// that failed) counts as no progress.
func waitForDrain(t testing.TB, stall, most time.Duration, what string, remaining func() int) {
	t.Helper()
	start := time.Now()
	best, bestAt := -1, start
	for {
		n := remaining()
		if n == 0 {
			t.Logf("%s: drained in %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if n > 0 && (best < 0 || n < best) {
			best, bestAt = n, time.Now()
		}
		switch {
		case time.Since(bestAt) > stall:
			t.Fatalf("%s: stuck at %d for %s (%s since the start)", what, best, stall, time.Since(start).Round(time.Second))
		case time.Since(start) > most:
			t.Fatalf("%s: %d left after %s", what, n, most)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOrderdServes(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	p := place(t, m.Addr(), "k1")
	if p.code != http.StatusCreated || p.status != "PENDING_PAYMENT" {
		t.Fatalf("POST = %+v", p)
	}
	if code, st := getOrder(t, m.Addr(), p.id); code != http.StatusOK || st != "PENDING_PAYMENT" {
		t.Fatalf("GET = %d %s", code, st)
	}
	if again := place(t, m.Addr(), "k1"); again.code != http.StatusOK || again.id != p.id {
		t.Fatalf("replay = %+v, want 200 with %s", again, p.id)
	}
	rres, err := http.Get("http://" + m.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer rres.Body.Close()
	var ready struct {
		Checks map[string]struct{ Status string }
	}
	if err := json.NewDecoder(rres.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	if rres.StatusCode != 200 || ready.Checks["mysql"].Status != "up" || ready.Checks["redis"].Status != "up" ||
		ready.Checks["rocketmq"].Status != "up" {
		t.Fatalf("readyz = %d %+v", rres.StatusCode, ready.Checks)
	}
	mres, err := http.Get("http://" + m.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	for _, want := range []string{`txorder_tx_execute_total{outcome="stored"} 1`, `txorder_orders{status="PENDING_PAYMENT"} 1`, `txorder_order_cache_size 0`,
		// One placement: one half message and its END_TRANSACTION (the
		// replay sends nothing); its transaction's BEGIN and COMMIT.
		`txorder_rocketmq_requests_total{request="send_half"} 1`, `txorder_rocketmq_requests_total{request="end_transaction"} 1`,
		`txorder_mysql_requests_total{request="commit"}`, `txorder_redis_requests_total{request="command"}`,
		// Its local transaction, a group of one.
		"txorder_group_commit_transactions_total 1\n", "txorder_group_commit_orders_total 1\n",
		"txorder_group_commit_refused_total 0\n", "txorder_group_commit_unknown_total 0\n"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestPprofOptIn: http.pprof_addr serves the profiles on its own
// listener; the API never serves them.
func TestPprofOptIn(t *testing.T) {
	s := newStack(t, stackOptions{env: []string{"TXORDER_HTTP__PPROF_ADDR=127.0.0.1:0"}})
	m := s.orderd()
	if m.pprof == nil {
		t.Fatal("pprof_addr set, no pprof server")
	}
	for url, want := range map[string]int{
		"http://" + m.pprof.addr() + "/debug/pprof/cmdline": http.StatusOK,
		"http://" + m.Addr() + "/debug/pprof/cmdline":       http.StatusNotFound,
	} {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", url, res.StatusCode, want)
		}
	}
}

// TestGracefulShutdown: Close lets a request that is in flight finish
// (here one blocked inside MySQL on a table lock) and refuses new ones.
func TestGracefulShutdown(t *testing.T) {
	s := newStack(t, stackOptions{})
	// A MySQL timeout long enough for the blocked insert to survive the wait.
	s.cfg.MySQL.Timeout = 5 * time.Second
	s.cfg.Transaction.ExecuteTimeout = 5 * time.Second
	m := s.orderd()
	ctx := context.Background()
	locker, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	if _, err := locker.ExecContext(ctx, `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	inflight := make(chan int, 1)
	go func() { inflight <- place(t, m.Addr(), "inflight").code }()
	waitFor(t, 5*time.Second, "the in-flight INSERT to wait on the lock", func() bool {
		var n int
		_ = s.db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO orders%'`).Scan(&n)
		return n > 0
	})
	addr := m.Addr()
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	waitFor(t, 5*time.Second, "new connections refused during shutdown", func() bool {
		c, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return true
		}
		c.Body.Close()
		return false
	})
	if _, err := locker.ExecContext(ctx, `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	if code := <-inflight; code != http.StatusCreated {
		t.Fatalf("in-flight request finished with %d, want 201", code)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("orders = %d (%v), want the in-flight one stored", n, err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.cfg.Auth.APIKeys = ""
	m := NewMain(s.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err := m.Open(context.Background())
	_ = m.Close()
	if err == nil || !strings.Contains(err.Error(), "auth.api_keys") {
		t.Fatalf("Open without API keys: err = %v, want one naming auth.api_keys", err)
	}
	_, err = configs.LoadOrderd("../../configs/orderd.yaml", append(s.env,
		"TXORDER_ORDER__PAYMENT_WINDOW=10m", "TXORDER_ROCKETMQ__CHECK_INTERVAL=30s", "TXORDER_ROCKETMQ__CHECK_MAX=15"))
	if err == nil || !strings.Contains(err.Error(), "order.payment_window: 10m0s does not fit") {
		t.Fatalf("window beyond the check budget: err = %v", err)
	}
}

// testLogLevel is the level of orderd's log in tests (shown when a test
// fails): debug with TXO_TEST_DEBUG set (the breakers' and sweeper's
// per-call errors are debug), else info.
func testLogLevel() slog.Level {
	if os.Getenv("TXO_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
