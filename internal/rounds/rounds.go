// Package rounds runs the periodic batch jobs of orderd (the closer, the
// idempotency key expiry): one round every interval, and the next at once
// when a round filled its batch, so a backlog drains without waiting.
package rounds

import (
	"context"
	"time"
)

// Run calls round after first, then every interval, until ctx is done. A
// round that returns more = true (it filled its batch: there is probably
// more to do) is followed at once by the next.
func Run(ctx context.Context, first, interval time.Duration, round func(ctx context.Context) (more bool)) {
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := interval
		if round(ctx) {
			next = 0
		}
		timer.Reset(next)
	}
}
