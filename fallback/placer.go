package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/txorder/txorder/order"
)

// SpillingPlacer puts the spill queue in front of the transactional placer:
// when the half message cannot be sent, the order is appended to the spill
// queue (202 QUEUED) instead of being refused. While sends keep failing, a
// circuit breaker skips the doomed send and spills at once, so a RocketMQ
// outage costs each placement one Redis write, not a send timeout.
type SpillingPlacer struct {
	next    order.Placer
	queue   *SpillQueue
	breaker *gobreaker.CircuitBreaker[order.Outcome]
}

// SpillConfig tunes a SpillingPlacer.
type SpillConfig struct {
	// BreakerFailures consecutive failed sends open the breaker. Default 3.
	BreakerFailures uint32
	// BreakerOpenFor is how long placements spill without trying a send.
	// Default 2s.
	BreakerOpenFor time.Duration
}

// NewSpillingPlacer wraps next.
func NewSpillingPlacer(next order.Placer, queue *SpillQueue, logger *slog.Logger, cfg SpillConfig) (*SpillingPlacer, error) {
	if next == nil || queue == nil || logger == nil {
		return nil, errors.New("spilling placer: next placer, queue and logger are required")
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 3
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = 2 * time.Second
	}
	return &SpillingPlacer{next: next, queue: queue,
		breaker: gobreaker.NewCircuitBreaker[order.Outcome](gobreaker.Settings{
			Name:        "rocketmq",
			MaxRequests: 1,
			Timeout:     cfg.BreakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
			// Only "not sent" says RocketMQ is unreachable.
			IsSuccessful: func(err error) bool { return !errors.Is(err, order.ErrNotSent) },
			OnStateChange: func(_ string, from, to gobreaker.State) {
				logger.Warn("rocketmq circuit breaker", "from", from.String(), "to", to.String())
			},
		})}, nil
}

// Place implements order.Placer.
func (p *SpillingPlacer) Place(ctx context.Context, o *order.Order) (order.Outcome, error) {
	out, err := p.breaker.Execute(func() (order.Outcome, error) { return p.next.Place(ctx, o) })
	if err == nil || !(errors.Is(err, order.ErrNotSent) ||
		errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)) {
		return out, err
	}
	if qerr := p.queue.Append(ctx, o); qerr != nil {
		if WriteMayHaveLanded(qerr) {
			// Redis may have queued it and lost the reply: the drainer
			// would then place it. Say so; a retry with the same key finds
			// the queued order.
			return "", fmt.Errorf("%w: %w: half message not sent (%w) and the spill append failed: %w",
				order.ErrRefused, order.ErrOutcomeUnknown, err, qerr)
		}
		return "", fmt.Errorf("%w: half message not sent (%w) and spill queue unavailable: %w", order.ErrRefused, err, qerr)
	}
	return order.OutcomeQueued, nil
}

// BreakerState returns the RocketMQ circuit breaker's state: "closed",
// "half-open" or "open".
func (p *SpillingPlacer) BreakerState() string { return p.breaker.State().String() }
