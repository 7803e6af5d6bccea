package fallback

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/order"
)

// behindProxy is a Redis client, through a fault proxy, to its own database
// of the shared server, with the breaker installed and probing.
type behindProxy struct {
	proxy   *faultproxy.Proxy
	rdb     *redis.Client
	breaker *Breaker
	reg     *prometheus.Registry
	cache   *OrderCache
	queue   *SpillQueue
}

func newBehindProxy(t *testing.T) *behindProxy {
	t.Helper()
	b := &behindProxy{proxy: faultproxy.Start(t, "redis", sharedRedis.Addr()), reg: prometheus.NewRegistry()}
	b.rdb = redis.NewClient(&redis.Options{Addr: b.proxy.Addr(), DB: sharedRedis.NewDB(t), MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { b.rdb.Close() })
	var err error
	b.breaker, err = NewBreaker(slog.New(slog.NewTextHandler(io.Discard, nil)), b.reg,
		BreakerConfig{Failures: 3, OpenFor: 300 * time.Millisecond, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.rdb.AddHook(b.breaker)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.breaker.Run(ctx, b.rdb) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg := CacheConfig{Timeout: 200 * time.Millisecond}
	b.cache, _ = NewOrderCache(b.rdb, cfg)
	b.queue, _ = NewSpillQueue(b.rdb, cfg)
	return b
}

// direct reads the same database without the proxy or the breaker.
func (b *behindProxy) direct(t *testing.T) *OrderCache {
	t.Helper()
	c, _ := NewOrderCache(client(t, sharedRedis, b.rdb.Options().DB), CacheConfig{})
	return c
}

// metric reads a counter or gauge from the breaker's registry.
func (b *behindProxy) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func waitState(t *testing.T, b *Breaker, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("breaker %s, want %s after 20s", b.State(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBreakerBypassesHungRedis: Redis stops answering with its connections
// open (the proxy swallows every byte). The first calls time out, and a
// write that timed out may have landed; after three the breaker opens and
// every call (writes, reads, scripts, MULTI, a blocking stream read, PING)
// fails at once without being sent, so a refused write is known not to
// have landed. When Redis answers again a background PING closes the
// breaker; no caller had to be the probe.
func TestBreakerBypassesHungRedis(t *testing.T) {
	b := newBehindProxy(t)
	ctx := context.Background()
	before := newOrder("before")
	if err := b.cache.Put(ctx, before); err != nil {
		t.Fatal(err)
	}
	if err := b.proxy.Hang(faultproxy.Both); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := b.cache.Put(ctx, newOrder("timed-out"))
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBreakerOpen) || !WriteMayHaveLanded(err) {
			t.Fatalf("call %d against the hung Redis: %v, want a timeout that may have landed", i, err)
		}
	}
	if got := b.breaker.State(); got != "open" {
		t.Fatalf("breaker %s after three timeouts, want open", got)
	}
	refused := newOrder("refused")
	_, _, claimErr := b.cache.ClaimKey(ctx, "demo", "k", order.IdempotencyRecord{OrderID: refused.ID, RequestHash: "h", ClaimedAt: time.Now()})
	_, getErr := b.cache.Get(ctx, before.ID)
	_, readErr := b.queue.Pending(ctx, 10)
	calls := map[string]error{
		"put":    b.cache.Put(ctx, refused),
		"append": b.queue.Append(ctx, refused),
		"claim":  claimErr,
		"get":    getErr,
		"xrange": readErr,
		"ping":   b.cache.Ping(ctx),
		// A raw call, as the drainer makes (it translates the error).
		"xreadgroup": translate(b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DrainGroup, Consumer: "c",
			Streams: []string{b.queue.streamKey(), ">"}, Block: time.Second}).Err()),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, ErrUnavailable) || WriteMayHaveLanded(err) {
			t.Errorf("%s while the breaker is open: %v, want ErrBreakerOpen (not sent, not landed)", name, err)
		}
	}
	if n := b.metric(t, "txorder_redis_breaker_refused_total"); n < float64(len(calls)) {
		t.Errorf("refused counter = %v, want at least %d", n, len(calls))
	}
	b.proxy.Heal()
	waitState(t, b.breaker, "closed")
	if _, err := b.cache.Get(ctx, before.ID); err != nil {
		t.Fatalf("after the probe closed the breaker: %v", err)
	}
	direct := b.direct(t)
	if _, err := direct.Get(ctx, refused.ID); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("a write the open breaker refused reached Redis: %v", err)
	}
	if _, err := direct.LookupKey(ctx, "demo", "k"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("a claim the open breaker refused reached Redis: %v", err)
	}
	if n := b.metric(t, "txorder_redis_breaker_opened_total"); n != 1 {
		t.Fatalf("opened counter = %v, want 1", n)
	}
}

// TestBreakerStaysOpenWhileRedisHangs: while Redis stays hung the probes
// fail and the breaker reopens; callers keep being refused at once.
func TestBreakerStaysOpenWhileRedisHangs(t *testing.T) {
	b := newBehindProxy(t)
	ctx := context.Background()
	if err := b.proxy.Hang(faultproxy.Downstream); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = b.cache.Ping(ctx)
	}
	waitState(t, b.breaker, "open")
	// Several probe rounds (OpenFor 300ms, each probe 200ms).
	deadline := time.Now().Add(2 * time.Second)
	refusedAll := true
	for time.Now().Before(deadline) {
		if err := b.cache.Ping(ctx); !errors.Is(err, ErrBreakerOpen) {
			refusedAll = false
			t.Errorf("ping while Redis hangs: %v, want ErrBreakerOpen", err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if refusedAll && b.breaker.State() == "closed" {
		t.Fatal("breaker closed while Redis still hangs")
	}
	if n := b.metric(t, "txorder_redis_breaker_opened_total"); n != 1 {
		t.Fatalf("opened counter = %v, want 1 (a failed probe reopens, it is not a new outage)", n)
	}
}

// TestBreakerCountsOnlyUnansweredCalls: error replies (WRONGTYPE, a miss)
// are answers and leave the breaker closed; connections reset
// mid-request open it like timeouts do.
func TestBreakerCountsOnlyUnansweredCalls(t *testing.T) {
	b := newBehindProxy(t)
	ctx := context.Background()
	if err := b.rdb.Set(ctx, "str", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := b.rdb.SAdd(ctx, "str", "m").Err(); err == nil {
			t.Fatal("SADD on a string succeeded")
		}
		if err := b.rdb.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
	}
	if got := b.breaker.State(); got != "closed" {
		t.Fatalf("breaker %s after error replies and misses, want closed", got)
	}
	if err := b.proxy.Reset(faultproxy.Downstream, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		err := b.cache.Put(ctx, newOrder("reset"))
		if !errors.Is(err, ErrUnavailable) || !WriteMayHaveLanded(err) {
			t.Fatalf("write whose answer was cut: %v, want unavailable and possibly landed", err)
		}
	}
	if got := b.breaker.State(); got != "open" {
		t.Fatalf("breaker %s after three reset connections, want open", got)
	}
	b.proxy.Heal()
	waitState(t, b.breaker, "closed")
}

// TestBreakerIgnoresCallersOwnDeadline: a caller whose own deadline comes
// before redis.timeout (a check-back at the end of its budget while MySQL
// is slow) fails on its own clock — go-redis returns its context's error
// before sending — and that says nothing about Redis: many such calls in a
// row must not open the breaker for everyone. Calls given the full timeout
// that Redis does not answer still count.
func TestBreakerIgnoresCallersOwnDeadline(t *testing.T) {
	b := newBehindProxy(t)
	for range 10 {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
		err := b.rdb.Get(ctx, "missing").Err()
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GET after the caller's deadline = %v, want its DeadlineExceeded", err)
		}
	}
	if got := b.breaker.State(); got != "closed" {
		t.Fatalf("breaker %s after callers' own expired deadlines, want closed", got)
	}
	if err := b.proxy.Hang(faultproxy.Both); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = b.rdb.Get(context.Background(), "missing").Err()
	}
	if got := b.breaker.State(); got != "open" {
		t.Fatalf("breaker %s after three calls Redis left unanswered, want open", got)
	}
	b.proxy.Heal()
	waitState(t, b.breaker, "closed")
}
