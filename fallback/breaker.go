package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/txorder/txorder/order"
)

// ErrBreakerOpen is returned, wrapped in ErrUnavailable, for a Redis call
// the circuit breaker held back: it was never sent, so a write refused this
// way did not land (WriteMayHaveLanded is false).
var ErrBreakerOpen = fmt.Errorf("redis circuit breaker open: %w", order.ErrNotAttempted)

// Breaker is the circuit breaker in front of every call a Redis client
// makes, installed as a go-redis hook (redis.Client.AddHook). Without it a
// Redis that hangs (connections open, no answers) costs every placement
// redis.timeout on its key claim, again on a cache or spill write, and on
// every GET; with it, Failures calls in a row that time out or lose their
// connection open the breaker, and from then on every call fails at once
// with ErrBreakerOpen, as fast as against a Redis that refuses
// connections. Callers already treat an unavailable Redis (no claim,
// 503 when the order needed Redis), so nothing else changes.
//
// No caller waits to find out whether Redis is back: while the breaker is
// not closed, callers are refused, and Run sends a PING through it every
// OpenFor; the first one answered closes it.
//
// Only a call Redis did not answer counts as a failure. An error reply
// (OOM, READONLY, NOSCRIPT…) and a miss are answers: Redis is up.
type Breaker struct {
	cb      *gobreaker.CircuitBreaker[struct{}]
	openFor time.Duration
	timeout time.Duration
	logger  *slog.Logger
	state   prometheus.Gauge
	opened  prometheus.Counter
	refused prometheus.Counter
}

// BreakerConfig tunes a Breaker.
type BreakerConfig struct {
	// Failures calls in a row that Redis did not answer open the breaker.
	// Default 3.
	Failures uint32
	// OpenFor is how long callers are refused before a probe is sent, and
	// the pause between probes while Redis stays down. Default 1s.
	OpenFor time.Duration
	// Timeout bounds each probe (redis.timeout). Default 500ms.
	Timeout time.Duration
}

// NewBreaker returns a Breaker; add it to the client with AddHook and run
// Run. reg may be nil.
func NewBreaker(logger *slog.Logger, reg prometheus.Registerer, cfg BreakerConfig) (*Breaker, error) {
	if logger == nil {
		return nil, errors.New("redis breaker: logger is required")
	}
	if cfg.Failures == 0 {
		cfg.Failures = 3
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	b := &Breaker{openFor: cfg.OpenFor, timeout: cfg.Timeout, logger: logger.With("component", "redis_breaker"),
		state: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "txorder", Subsystem: "redis", Name: "breaker_state",
			Help: "Redis circuit breaker: 0 closed, 1 half-open, 2 open. Not closed: every Redis call fails at once."}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "redis", Name: "breaker_opened_total",
			Help: "Times the Redis circuit breaker opened: Redis left calls unanswered (timeouts, lost connections)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "redis", Name: "breaker_refused_total",
			Help: "Redis calls the circuit breaker failed at once, without sending them."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{b.state, b.opened, b.refused} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1, // the probe
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		IsSuccessful: func(err error) bool {
			return !unanswered(err)
		},
		// A caller that gave up (shutdown), or whose own deadline came
		// before redis.timeout, says nothing about Redis.
		IsExcluded: func(err error) bool {
			var short *callerDeadlineError
			return errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) || errors.Is(err, ErrBreakerOpen) ||
				errors.As(err, &short)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.state.Set(float64(to))
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					b.opened.Inc()
					b.logger.Warn("redis circuit breaker opened: redis is not answering; calls fail at once until a probe gets an answer")
				}
			case gobreaker.StateClosed:
				b.logger.Info("redis circuit breaker closed: redis answers again")
			}
		},
	})
	return b, nil
}

// unanswered reports whether err means Redis did not answer the call:
// a timeout, a lost or refused connection, an exhausted pool. Error
// replies and misses are answers.
func unanswered(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// callerDeadlineError wraps a call that ran out of its caller's own time,
// well short of redis.timeout: not counted for or against Redis.
type callerDeadlineError struct{ err error }

func (e *callerDeadlineError) Error() string { return e.err.Error() }
func (e *callerDeadlineError) Unwrap() error { return e.err }

// State is the breaker's state: "closed", "half-open" or "open".
func (b *Breaker) State() string { return b.cb.State().String() }

// probeKey marks the context of Run's probes, the only calls let through
// while the breaker is half-open; admittedKey the context of a call the
// breaker let through, so that the commands go-redis runs inside it (a new
// connection's HELLO and SELECT) are not counted, or refused, a second
// time.
type (
	probeKey    struct{}
	admittedKey struct{}
)

// admit runs call through the breaker, or refuses it at once.
func (b *Breaker) admit(ctx context.Context, call func(ctx context.Context) error) error {
	if ctx.Value(admittedKey{}) != nil {
		return call(ctx)
	}
	if ctx.Value(probeKey{}) == nil && b.cb.State() != gobreaker.StateClosed {
		b.refused.Inc()
		return ErrBreakerOpen
	}
	ctx = context.WithValue(ctx, admittedKey{}, true)
	start := time.Now()
	_, err := b.cb.Execute(func() (struct{}, error) {
		err := call(ctx)
		// A caller that came with less than half of redis.timeout left (a
		// check-back at the end of its budget while MySQL is slow) and
		// failed with its own context's error — go-redis gives up waiting
		// for a connection when the caller's context ends — ran out of its
		// own time, and that must not open the breaker for everyone. A
		// socket timeout (redis.timeout) still counts, and so does a caller
		// with its full budget left waiting for a pool that Redis holds.
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			if dl, ok := ctx.Deadline(); ok && dl.Sub(start) < b.timeout/2 {
				return struct{}{}, &callerDeadlineError{err}
			}
		}
		return struct{}{}, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		b.refused.Inc()
		return ErrBreakerOpen
	}
	return err
}

// DialHook implements redis.Hook; dials happen inside a call and are
// counted with it.
func (b *Breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (b *Breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := b.admit(ctx, func(ctx context.Context) error { return next(ctx, cmd) })
		if errors.Is(err, ErrBreakerOpen) {
			cmd.SetErr(err)
		}
		return err
	}
}

// ProcessPipelineHook implements redis.Hook: a pipeline or a MULTI/EXEC
// is one call.
func (b *Breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := b.admit(ctx, func(ctx context.Context) error { return next(ctx, cmds) })
		if errors.Is(err, ErrBreakerOpen) {
			for _, cmd := range cmds {
				cmd.SetErr(err)
			}
		}
		return err
	}
}

// Run probes Redis while the breaker is not closed: a PING, bounded by
// Timeout, every OpenFor, until one is answered. It returns when ctx ends.
func (b *Breaker) Run(ctx context.Context, rdb redis.UniversalClient) {
	probeWhileHalfOpen(ctx, b.openFor, b.cb.State, func() {
		pctx, cancel := context.WithTimeout(context.WithValue(ctx, probeKey{}, true), b.timeout)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err != nil && ctx.Err() == nil {
			b.logger.Debug("redis probe failed", "error", err)
		}
	})
}

// probeWhileHalfOpen calls probe every quarter of openFor (at most every
// 250 ms) while state is half-open — a gobreaker moves from open to
// half-open once openFor has passed, and lets one call through — until
// ctx ends. Both breakers (Redis, RocketMQ) are probed this way, so that no
// caller has to be the probe.
func probeWhileHalfOpen(ctx context.Context, openFor time.Duration, state func() gobreaker.State, probe func()) {
	tick := time.NewTicker(min(openFor/4, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if state() == gobreaker.StateHalfOpen {
			probe()
		}
	}
}
