package loadgen

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// balancer spreads requests over several orderd replicas the way a load
// balancer with health checks does: round-robin over the replicas whose
// /readyz answered 200 at the last poll. A replica that is shutting down
// answers 503 there before it closes its listener (http.drain_delay), so
// it stops getting requests before it refuses connections. With one
// target nothing is polled.
type balancer struct {
	targets []string
	ready   []atomic.Bool
	next    atomic.Uint64
}

func newBalancer(targets []string) *balancer {
	b := &balancer{targets: make([]string, len(targets)), ready: make([]atomic.Bool, len(targets))}
	for i, t := range targets {
		b.targets[i] = strings.TrimRight(t, "/")
		b.ready[i].Store(true) // until the first poll says otherwise
	}
	return b
}

// pick returns the next ready target's index, round-robin; when none is
// ready, the next one regardless (its answer is counted as it comes).
func (b *balancer) pick() int {
	n := uint64(len(b.targets))
	start := b.next.Add(1)
	for k := range n {
		if i := int((start + k) % n); b.ready[i].Load() {
			return i
		}
	}
	return int(start % n)
}

// other returns a ready target other than i (the next one after it), so
// that a payment goes to another replica than its order's placement; i
// itself only when it is the only ready one, or there is one target.
func (b *balancer) other(i int) int {
	n := len(b.targets)
	for k := 1; k < n; k++ {
		if j := (i + k) % n; b.ready[j].Load() {
			return j
		}
	}
	if n > 1 && !b.ready[i].Load() {
		return (i + 1) % n
	}
	return i
}

// poll asks every target's /readyz each interval until ctx ends, each
// target on its own, so that a slow one does not hold the others' marks.
// A probe that fails, answers anything but 200, or takes longer than a
// second (or two intervals, if longer) marks the target not ready.
func (b *balancer) poll(ctx context.Context, client *http.Client, every time.Duration) {
	if len(b.targets) < 2 || every <= 0 {
		return
	}
	timeout := max(2*every, time.Second)
	var wg sync.WaitGroup
	for i, base := range b.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				b.ready[i].Store(probe(ctx, client, base+"/readyz", timeout))
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
}

func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}
