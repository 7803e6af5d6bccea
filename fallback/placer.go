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
//
// With a Probe, no placement tests whether RocketMQ is back: while the
// breaker is not closed every placement spills, and Run sends the probe
// (a warm-up half message) through the breaker every BreakerOpenFor; the
// first one sent closes it. Without one, the first placement after
// BreakerOpenFor is the probe, and against a broker that hangs it waits a
// whole send timeout.
type SpillingPlacer struct {
	next    order.Placer
	queue   *SpillQueue
	breaker *gobreaker.CircuitBreaker[order.Outcome]
	cfg     SpillConfig
	logger  *slog.Logger
}

// SpillConfig tunes a SpillingPlacer.
type SpillConfig struct {
	// BreakerFailures consecutive failed sends open the breaker. Default 3.
	BreakerFailures uint32
	// BreakerOpenFor is how long placements spill without trying a send.
	// Default 2s.
	BreakerOpenFor time.Duration
	// Probe, if set, tells whether RocketMQ takes a send now (it returns
	// nil once one was sent); Run calls it while the breaker is half-open.
	Probe func(ctx context.Context) error
	// ProbeTimeout bounds each probe. Default 3s.
	ProbeTimeout time.Duration
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
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 3 * time.Second
	}
	return &SpillingPlacer{next: next, queue: queue, cfg: cfg, logger: logger,
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

// errHeldBack: the breaker is not closed and a background probe decides
// when it is; the placement spills without trying a send.
var errHeldBack = fmt.Errorf("rocketmq circuit breaker not closed: %w", gobreaker.ErrOpenState)

// Place implements order.Placer.
func (p *SpillingPlacer) Place(ctx context.Context, o *order.Order) (order.Outcome, error) {
	var (
		out order.Outcome
		err error
	)
	if p.cfg.Probe != nil && p.breaker.State() != gobreaker.StateClosed {
		err = errHeldBack
	} else {
		out, err = p.breaker.Execute(func() (order.Outcome, error) { return p.next.Place(ctx, o) })
	}
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

// Run sends the probe through the breaker while it is half-open (once
// BreakerOpenFor has passed since it opened), until ctx ends. Without a
// Probe it returns at once.
func (p *SpillingPlacer) Run(ctx context.Context) {
	if p.cfg.Probe == nil {
		return
	}
	probeWhileHalfOpen(ctx, p.cfg.BreakerOpenFor, p.breaker.State, func() {
		_, err := p.breaker.Execute(func() (order.Outcome, error) {
			pctx, cancel := context.WithTimeout(ctx, p.cfg.ProbeTimeout)
			defer cancel()
			if err := p.cfg.Probe(pctx); err != nil {
				return "", fmt.Errorf("%w: probe: %w", order.ErrNotSent, err)
			}
			return "", nil
		})
		if err != nil && ctx.Err() == nil {
			p.logger.Debug("rocketmq probe failed", "error", err)
		}
	})
}

// BreakerState returns the RocketMQ circuit breaker's state: "closed",
// "half-open" or "open".
func (p *SpillingPlacer) BreakerState() string { return p.breaker.State().String() }
