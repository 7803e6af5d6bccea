package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

var sharedRedis *testenv.RedisServer

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, nil, &sharedRedis)) }

func client(t *testing.T, rd *testenv.RedisServer, db int) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), DB: db, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func newOrder(key string) *order.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &order.Order{ID: uuid.Must(uuid.NewV7()), CustomerID: "c", Currency: "EUR", Total: 200,
		Items:  []order.Item{{SKU: "s", Name: "n", Quantity: 2, UnitPrice: 100}},
		Status: order.StatusPendingPayment, PaymentDeadline: now.Add(time.Minute), CreatedAt: now, UpdatedAt: now,
		ClientID: "demo", IdempotencyKey: key, RequestHash: "hash-" + key}
}

func TestOrderCache(t *testing.T) {
	c, err := NewOrderCache(client(t, sharedRedis, sharedRedis.NewDB(t)), CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o := newOrder("k1")
	if err := c.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, o.ID)
	if err != nil || got.ID != o.ID || got.Total != 200 || got.IdempotencyKey != "k1" || !got.CreatedAt.Equal(o.CreatedAt) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := c.LookupKey(ctx, "demo", "k1"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("Put wrote the key record (claims are order.Service's): %v", err)
	}
	if n, _ := c.Size(ctx); n != 1 {
		t.Fatalf("Size = %d", n)
	}
	if err := c.Delete(ctx, o.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if n, _ := c.Size(ctx); n != 0 {
		t.Fatalf("Size after Delete = %d", n)
	}
	if _, err := c.LookupKey(ctx, "demo", "other"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestRedisDown: with redis-server killed or hung (SIGSTOP), every call
// fails with ErrUnavailable within the timeout; after a restart the data
// written before the kill is there (AOF, fsync always).
func TestRedisDown(t *testing.T) {
	rd := testenv.Redis(t)
	rdb := client(t, rd, 0)
	c, _ := NewOrderCache(rdb, CacheConfig{Timeout: 300 * time.Millisecond})
	q, _ := NewSpillQueue(rdb, CacheConfig{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	kept, queued := newOrder("a"), newOrder("b")
	if err := c.Put(ctx, kept); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(ctx, queued); err != nil {
		t.Fatal(err)
	}
	timedOut := newOrder("y")
	for _, f := range []struct {
		name  string
		fault func() error
	}{{"paused", rd.Pause}, {"killed", rd.Kill}} {
		name := f.name
		if err := f.fault(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		appendErr := q.Append(ctx, timedOut)
		if name == "paused" && !WriteMayHaveLanded(appendErr) {
			// A hung Redis may apply the write when it resumes.
			t.Fatalf("paused: a timed-out append must count as possibly landed: %v", appendErr)
		}
		errs := []error{c.Put(ctx, newOrder("x")), appendErr, c.Ping(ctx)}
		_, err := c.Get(ctx, kept.ID)
		errs = append(errs, err)
		for i, err := range errs {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s: call %d err = %v, want ErrUnavailable", name, i, err)
			}
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Fatalf("%s: four calls took %s with a 300ms timeout", name, took)
		}
		if name == "paused" {
			if err := rd.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, kept.ID); err != nil || got.ID != kept.ID {
		t.Fatalf("cached order after kill -9 and restart: %v %v", got, err)
	}
	if got, err := q.Get(ctx, queued.ID); err != nil || got.ID != queued.ID {
		t.Fatalf("queued order after kill -9 and restart: %v %v", got, err)
	}
	// The append that timed out against the paused Redis may have landed
	// when it resumed (which is why callers report an unknown outcome).
	_, yErr := q.Get(ctx, timedOut.ID)
	want := int64(1)
	if yErr == nil {
		want = 2
	}
	if pending, _, err := q.Depth(ctx); err != nil || pending != want {
		t.Fatalf("pending after restart = %d (%v), want %d", pending, err, want)
	}
}

// TestKeyClaims: the first claim of a key wins and later ones see it; a
// stale claim is taken over only if it still names the same order; a
// release frees only the claimant's own record.
func TestKeyClaims(t *testing.T) {
	c, _ := NewOrderCache(client(t, sharedRedis, sharedRedis.NewDB(t)), CacheConfig{})
	ctx := context.Background()
	rec := func() order.IdempotencyRecord {
		return order.IdempotencyRecord{OrderID: uuid.Must(uuid.NewV7()), RequestHash: "h", ClaimedAt: time.Now().UTC().Truncate(time.Millisecond)}
	}
	first, second, third := rec(), rec(), rec()
	if got, ok, err := c.ClaimKey(ctx, "demo", "k", first); err != nil || !ok || got.OrderID != first.OrderID {
		t.Fatalf("first claim = %+v %v %v", got, ok, err)
	}
	got, ok, err := c.ClaimKey(ctx, "demo", "k", second)
	if err != nil || ok || got.OrderID != first.OrderID || !got.ClaimedAt.Equal(first.ClaimedAt) {
		t.Fatalf("second claim = %+v %v %v, want the first's record", got, ok, err)
	}
	if ok, err := c.ReplaceKey(ctx, "demo", "k", second, third); err != nil || ok {
		t.Fatalf("replace naming the wrong old order = %v %v, want false", ok, err)
	}
	if ok, err := c.ReplaceKey(ctx, "demo", "k", first, third); err != nil || !ok {
		t.Fatalf("replace of the stale claim = %v %v, want true", ok, err)
	}
	if err := c.ReleaseKey(ctx, "demo", "k", first.OrderID); err != nil {
		t.Fatal(err)
	}
	if got, err := c.LookupKey(ctx, "demo", "k"); err != nil || got.OrderID != third.OrderID {
		t.Fatalf("a release by a former claimant freed the key: %+v %v", got, err)
	}
	if err := c.ReleaseKey(ctx, "demo", "k", third.OrderID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupKey(ctx, "demo", "k"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("released key still claimed: %v", err)
	}
}

func TestSpillAppendIsIdempotent(t *testing.T) {
	q, _ := NewSpillQueue(client(t, sharedRedis, sharedRedis.NewDB(t)), CacheConfig{})
	ctx := context.Background()
	o := newOrder("once")
	for range 3 {
		if err := q.Append(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if pending, dead, _ := q.Depth(ctx); pending != 1 || dead != 0 {
		t.Fatalf("depth = %d/%d, want one entry", pending, dead)
	}
	if err := q.Replay(ctx, o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("Replay of a live entry = %v, want ErrNotFound", err)
	}
}

func TestBackoff(t *testing.T) {
	var prev time.Duration
	for i := range 20 {
		next := nextBackoff(prev, 100*time.Millisecond, 2*time.Second)
		if next < 50*time.Millisecond || next > 2*time.Second {
			t.Fatalf("step %d: %s outside [min/2, max]", i, next)
		}
		prev = next
	}
	if prev < time.Second {
		t.Fatalf("after 20 failures the wait is %s; it should approach the 2s cap", prev)
	}
}

// placeAll is a placer that records what it placed (it stands for the
// transactional placer, which the cmd/orderd tests run for real).
type placeAll struct {
	mu     sync.Mutex
	placed map[uuid.UUID]bool
}

func (p *placeAll) Place(_ context.Context, o *order.Order) (order.Outcome, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.placed[o.ID] = true
	return order.OutcomeStored, nil
}

type noRows struct{}

func (noRows) Get(context.Context, uuid.UUID) (*order.Order, error) { return nil, order.ErrNotFound }

// TestPoisonEntryIsBuried: an entry whose order cannot be decoded is marked
// dead at once instead of being retried first every round, stalling the
// entries behind it.
func TestPoisonEntryIsBuried(t *testing.T) {
	rdb := client(t, sharedRedis, sharedRedis.NewDB(t))
	q, _ := NewSpillQueue(rdb, CacheConfig{})
	ctx := context.Background()
	bad := newOrder("bad")
	if err := q.Append(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, q.orderKey(bad.ID), "{not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var good []uuid.UUID
	for i := range 5 {
		o := newOrder(fmt.Sprintf("good-%d", i))
		if err := q.Append(ctx, o); err != nil {
			t.Fatal(err)
		}
		good = append(good, o.ID)
	}
	placer := &placeAll{placed: map[uuid.UUID]bool{}}
	d, err := NewDrainer(q, placer, noRows{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)),
		DrainerConfig{Batch: 2, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.Run(ctx) }()
	defer d.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, dead, _ := q.Depth(ctx)
		if pending == 0 && dead == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, dead %d: the poison entry stalled the queue", pending, dead)
		}
		time.Sleep(10 * time.Millisecond)
	}
	placer.mu.Lock()
	defer placer.mu.Unlock()
	for _, id := range good {
		if !placer.placed[id] {
			t.Fatalf("good order %s not placed", id)
		}
	}
	if dead, _ := q.Dead(ctx); len(dead) != 1 || dead[0].OrderID != bad.ID || !strings.Contains(dead[0].LastError, "decode") {
		t.Fatalf("dead entries = %+v", dead)
	}
}

// countHook counts SET NX round trips: one per command sent alone, one
// per pipeline holding some.
type countHook struct{ alone, pipelines, inPipelines atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "set" {
			h.alone.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		sets := 0
		for _, cmd := range cmds {
			if cmd.Name() == "set" {
				sets++
			}
		}
		if sets > 0 { // not a connection's HELLO / CLIENT SETINFO
			h.pipelines.Add(1)
			h.inPipelines.Add(int64(sets))
		}
		return next(ctx, cmds)
	}
}

// TestKeyClaimsGrouped: claims made at once share pipelines, and each gets
// its own answer: one winner per key, the others that winner's record.
func TestKeyClaimsGrouped(t *testing.T) {
	rdb := client(t, sharedRedis, sharedRedis.NewDB(t))
	hook := &countHook{}
	rdb.AddHook(hook)
	c, _ := NewOrderCache(rdb, CacheConfig{GroupClaims: true})
	const keys, perKey = 40, 3
	type answer struct {
		key     int
		own     uuid.UUID
		got     order.IdempotencyRecord
		claimed bool
		err     error
	}
	answers := make(chan answer, keys*perKey)
	var wg sync.WaitGroup
	for k := range keys {
		for range perKey {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := order.IdempotencyRecord{OrderID: uuid.Must(uuid.NewV7()), RequestHash: "h", ClaimedAt: time.Now().UTC()}
				got, ok, err := c.ClaimKey(context.Background(), "demo", fmt.Sprint("g-", k), rec)
				answers <- answer{key: k, own: rec.OrderID, got: got, claimed: ok, err: err}
			}()
		}
	}
	wg.Wait()
	close(answers)
	winners := map[int]uuid.UUID{}
	var all []answer
	for a := range answers {
		if a.err != nil {
			t.Fatalf("claim of key %d: %v", a.key, a.err)
		}
		if a.claimed {
			if w, dup := winners[a.key]; dup {
				t.Fatalf("key %d claimed twice: %s and %s", a.key, w, a.own)
			}
			winners[a.key] = a.own
		}
		all = append(all, a)
	}
	for _, a := range all {
		if w, ok := winners[a.key]; !ok {
			t.Fatalf("key %d claimed by nobody", a.key)
		} else if !a.claimed && a.got.OrderID != w {
			t.Fatalf("loser of key %d got record %s, want the winner's %s", a.key, a.got.OrderID, w)
		}
	}
	sent := hook.alone.Load() + hook.pipelines.Load()
	t.Logf("%d claims: %d SET NX alone, %d pipelines holding %d", keys*perKey, hook.alone.Load(), hook.pipelines.Load(), hook.inPipelines.Load())
	if hook.pipelines.Load() == 0 || sent >= keys*perKey {
		t.Fatalf("%d claims at once took %d round trips (%d pipelines): not grouped", keys*perKey, sent, hook.pipelines.Load())
	}
}

// TestKeyClaimsGroupedRedisHung: claims grouped behind a Redis that stops
// answering all fail within the cache's timeout, as unavailable; with
// Redis killed -9 among claims in flight, those that fail say unavailable.
func TestKeyClaimsGroupedRedisHung(t *testing.T) {
	rd := testenv.Redis(t)
	c, _ := NewOrderCache(client(t, rd, 0), CacheConfig{GroupClaims: true, Timeout: 300 * time.Millisecond})
	if _, ok, err := c.ClaimKey(context.Background(), "demo", "warm", order.IdempotencyRecord{OrderID: uuid.New()}); err != nil || !ok {
		t.Fatalf("warm-up claim: %v %v", ok, err)
	}
	if err := rd.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rd.Resume() }()
	const n = 30
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		go func() {
			_, _, err := c.ClaimKey(context.Background(), "demo", fmt.Sprint("h-", i), order.IdempotencyRecord{OrderID: uuid.New()})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; !errors.Is(err, ErrUnavailable) {
			t.Fatalf("claim against a hung Redis: %v, want ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("claims against a hung Redis took %s, timeout 300ms each", d)
	}

	// Killed -9 with claims grouped in flight: each fails on its own.
	if err := rd.Resume(); err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	for i := range n {
		go func() {
			if i == n/2 {
				_ = rd.Kill()
				close(killed)
			}
			_, _, err := c.ClaimKey(context.Background(), "demo", fmt.Sprint("k-", i), order.IdempotencyRecord{OrderID: uuid.New()})
			errs <- err
		}()
	}
	<-killed
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("claim while Redis is killed: %v, want ErrUnavailable", err)
			}
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no claim failed although Redis was killed among them")
	}
}
