package fallback

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/order"
)

// scriptedPlacer stands in for the transactional placer: "not sent" while
// down, stored otherwise; it counts the placements it was asked for.
type scriptedPlacer struct {
	down  atomic.Bool
	calls atomic.Int64
}

func (p *scriptedPlacer) Place(context.Context, *order.Order) (order.Outcome, error) {
	p.calls.Add(1)
	if p.down.Load() {
		return "", errors.Join(order.ErrRefused, order.ErrNotSent)
	}
	return order.OutcomeStored, nil
}

// TestSpillingPlacerProbesInTheBackground: once the breaker opened, no
// placement tries a send, not even the first after BreakerOpenFor (it
// would wait a whole send timeout on a hung broker): every placement
// spills until the background probe gets a send through.
func TestSpillingPlacerProbesInTheBackground(t *testing.T) {
	// Roomy timeouts: this test is about the breaker, not a slow machine.
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(t), MaxRetries: -1,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	q, _ := NewSpillQueue(rdb, CacheConfig{Timeout: 5 * time.Second})
	next := &scriptedPlacer{}
	next.down.Store(true)
	var probes atomic.Int64
	sp, err := NewSpillingPlacer(next, q, slog.New(slog.NewTextHandler(io.Discard, nil)), SpillConfig{
		BreakerFailures: 3, BreakerOpenFor: 100 * time.Millisecond,
		Probe: func(context.Context) error {
			probes.Add(1)
			if next.down.Load() {
				return errors.New("broker does not answer")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sp.Run(ctx) }()
	defer func() { cancel(); <-done }()

	place := func() order.Outcome {
		t.Helper()
		out, err := sp.Place(context.Background(), newOrder(""))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for range 3 {
		if out := place(); out != order.OutcomeQueued {
			t.Fatalf("failed send: %s, want QUEUED", out)
		}
	}
	if got := sp.BreakerState(); got != "open" {
		t.Fatalf("breaker %s after three failed sends", got)
	}
	// Through several open/half-open rounds: placements never send.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if out := place(); out != order.OutcomeQueued {
			t.Fatalf("placement while RocketMQ is down: %s, want QUEUED", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := next.calls.Load(); n != 3 {
		t.Fatalf("%d sends tried, want only the 3 that opened the breaker", n)
	}
	if probes.Load() < 2 {
		t.Fatalf("%d probes in a second with BreakerOpenFor 100ms", probes.Load())
	}
	next.down.Store(false)
	waitFor := time.Now().Add(10 * time.Second)
	for sp.BreakerState() != "closed" {
		if time.Now().After(waitFor) {
			t.Fatal("the probe did not close the breaker once sends went through")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out := place(); out != order.OutcomeStored {
		t.Fatalf("placement after recovery: %s, want STORED", out)
	}
	if pending, _, err := q.Depth(context.Background()); err != nil || pending < 3 {
		t.Fatalf("spill queue holds %d (%v)", pending, err)
	}
}
