package fallback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

// fillRedis sets maxmemory just above what Redis uses now, with
// noeviction, writes filler keys until Redis answers OOM, then lowers
// maxmemory 1 MB below the memory used so that it stays full.
func fillRedis(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	c, err := NewOrderCache(rdb, CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Memory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", fmt.Sprint(m.Used + 2<<20)}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	filler := strings.Repeat("x", 4<<10)
	for i := 0; ; i++ {
		err := rdb.Set(ctx, fmt.Sprintf("filler:%d", i), filler, 0).Err()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "OOM ") {
				t.Fatalf("filler write %d: %v, want OOM", i, err)
			}
			// Used memory sits within a few KB of the limit now and moves
			// (buffers freed after the refused write): the next small write
			// may fit. Put the limit 1 MB under what is used, so that Redis
			// stays full for the test whatever it frees meanwhile.
			m, err := c.Memory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(m.Used-1<<20)).Err(); err != nil {
				t.Fatal(err)
			}
			return
		}
		if i > 100000 {
			t.Fatal("Redis never reached maxmemory")
		}
	}
}

// TestRedisFull: with Redis at maxmemory (noeviction), every order write
// is refused with OOM, nothing of it is written, and WriteMayHaveLanded
// says so (the order is definitely not recorded: orderd answers a plain
// 503 and rolls the half message back). Ping reports Redis full with its
// numbers; Memory reports them. Raising maxmemory lets the same writes in.
func TestRedisFull(t *testing.T) {
	rd := testenv.Redis(t)
	rdb := client(t, rd, 0)
	ctx := context.Background()
	cache, err := NewOrderCache(rdb, CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	spill, err := NewSpillQueue(rdb, CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Ping(ctx); err != nil {
		t.Fatalf("Ping before: %v", err)
	}
	fillRedis(t, rdb)

	m, err := cache.Memory(ctx)
	if err != nil || !m.Full() || m.Policy != "noeviction" || m.Max == 0 {
		t.Fatalf("Memory = %+v, %v; want full under noeviction", m, err)
	}
	if err := cache.Ping(ctx); err == nil || !strings.Contains(err.Error(), "redis is full") {
		t.Errorf("Ping when full = %v, want redis is full", err)
	}

	o := newOrder("full-1")
	writes := map[string]func() error{
		"cache put":    func() error { return cache.Put(ctx, o) },
		"spill append": func() error { return spill.Append(ctx, o) },
		"claim key": func() error {
			_, _, err := cache.ClaimKey(ctx, "demo", "full-1", order.IdempotencyRecord{OrderID: o.ID, RequestHash: "h"})
			return err
		},
	}
	for name, write := range writes {
		err := write()
		t.Logf("%s when full: %v", name, err)
		if err == nil || !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s when full = %v, want ErrUnavailable", name, err)
			continue
		}
		if WriteMayHaveLanded(err) {
			t.Errorf("%s: WriteMayHaveLanded(%v) = true; an OOM refusal wrote nothing", name, err)
		}
	}
	if _, err := cache.Get(ctx, o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("cached order after refused Put: %v, want not found", err)
	}
	if _, err := spill.Get(ctx, o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("queued order after refused Append: %v, want not found", err)
	}
	if pending, _, err := spill.Depth(ctx); err != nil || pending != 0 {
		t.Errorf("spill depth after refused Append = %d, %v, want 0", pending, err)
	}
	if _, err := cache.LookupKey(ctx, "demo", "full-1"); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("claim after refused ClaimKey: %v, want not found", err)
	}

	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for name, write := range writes {
		if err := write(); err != nil {
			t.Errorf("%s after raising maxmemory: %v", name, err)
		}
	}
	if err := cache.Ping(ctx); err != nil {
		t.Errorf("Ping after raising maxmemory: %v", err)
	}
}

func TestWriteMayHaveLanded(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{fmt.Errorf("%w: %w", ErrUnavailable, context.DeadlineExceeded), true},
		{fmt.Errorf("%w: %w", ErrUnavailable, redis.ErrClosed), true},
		{errors.New("OOM command not allowed"), true}, // not a Redis reply: says nothing
	} {
		if got := WriteMayHaveLanded(tc.err); got != tc.want {
			t.Errorf("WriteMayHaveLanded(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestParseMemory(t *testing.T) {
	m, err := parseMemory("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:2097152\r\nmaxmemory_policy:noeviction\r\nmem_not_counted_for_evict:1024\r\n")
	if err != nil || m != (Memory{Used: 1 << 20, Max: 2 << 20, NotCounted: 1024, Policy: "noeviction"}) {
		t.Fatalf("parseMemory = %+v, %v", m, err)
	}
	if m.Full() {
		t.Error("half full reported full")
	}
	if !(Memory{Used: 99 << 20, Max: 100 << 20, Policy: "noeviction"}).Full() {
		t.Error("99 % used not reported full")
	}
	if _, err := parseMemory("# Memory\r\nused_memory:12\r\n"); err == nil {
		t.Error("INFO without maxmemory accepted")
	}
	if (Memory{Used: 10, Max: 5, Policy: "allkeys-lru"}).Full() {
		t.Error("an evicting Redis reported full (it evicts instead of refusing)")
	}
}
