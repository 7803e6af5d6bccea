package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/order"
)

// OrderExists tells whether an order row exists (order.Store.Get).
type OrderExists interface {
	Get(ctx context.Context, id uuid.UUID) (*order.Order, error)
}

// DrainerConfig tunes a Drainer.
type DrainerConfig struct {
	// Consumer names this drainer in the stream's consumer group; unique
	// per replica (default: a random id).
	Consumer string
	// Batch is how many entries one read takes. Default 50.
	Batch int64
	// Concurrency is how many entries of one read are placed at once
	// (each is its own half message and MySQL transaction, so MySQL's
	// group commit can take several). Default 1.
	Concurrency int
	// Block is how long a read waits for new entries. Default 1s.
	Block time.Duration
	// ClaimIdle: entries another drainer read and did not acknowledge for
	// this long are taken over (it crashed). Default 30s.
	ClaimIdle time.Duration
	// MaxAttempts placements of one order before it is marked dead.
	// Default 240, as spill.max_attempts.
	MaxAttempts int64
	// BackoffMin and BackoffMax bound the wait after a failed placement
	// (exponential, with jitter). Defaults 200ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// AfterPlace, if set, runs after an order was placed and before its
	// entry is acknowledged. Tests use it to kill the drainer there.
	AfterPlace func(id uuid.UUID)
}

// Drainer re-runs placement for spilled orders: it reads the stream in a
// consumer group, places each order with the transactional placer, and
// acknowledges an entry only after the placement succeeded. Entries left
// unacknowledged by a crashed drainer are reclaimed after ClaimIdle; a
// placement is idempotent by order id, so a reclaimed entry is never placed
// twice. Several replicas may drain one stream. Shape of watermill's
// forwarder: Run(ctx) and Close().
type Drainer struct {
	q       *SpillQueue
	placer  order.Placer
	orders  OrderExists
	cfg     DrainerConfig
	logger  *slog.Logger
	metrics *drainMetrics

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
}

type drainMetrics struct {
	drained  prometheus.Counter
	attempts *prometheus.CounterVec
	died     prometheus.Counter
}

// NewDrainer returns a Drainer. placer must be the transactional placer
// itself, never a spilling one. reg may be nil.
func NewDrainer(q *SpillQueue, placer order.Placer, orders OrderExists, reg prometheus.Registerer, logger *slog.Logger, cfg DrainerConfig) (*Drainer, error) {
	if q == nil || placer == nil || orders == nil || logger == nil {
		return nil, errors.New("drainer: queue, placer, order store and logger are required")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "drainer-" + uuid.NewString()[:8]
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 50
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	if cfg.ClaimIdle <= 0 {
		cfg.ClaimIdle = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 240
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = 30 * time.Second
	}
	m := &drainMetrics{
		drained: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "spill",
			Name: "drained_total", Help: "Spilled orders placed by the drainer."}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "spill",
			Name: "drain_attempts_total", Help: "Placement attempts of spilled orders by result (placed, retry, dead)."}, []string{"result"}),
		died: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "spill",
			Name: "dead_total", Help: "Spilled orders marked dead after MaxAttempts."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.drained, m.attempts, m.died} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return &Drainer{q: q, placer: placer, orders: orders, cfg: cfg, logger: logger.With("component", "drainer", "consumer", cfg.Consumer),
		metrics: m, closing: make(chan struct{}), done: make(chan struct{})}, nil
}

// errRetryLater stops a batch: the dependency that failed will fail the
// rest of it too.
var errRetryLater = errors.New("retry later")

// Run drains until ctx is done or Close is called.
func (d *Drainer) Run(ctx context.Context) error {
	defer close(d.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	backoff := time.Duration(0)
	failing := false
	for ctx.Err() == nil {
		err := d.round(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if failing {
				d.logger.Info("spill drain recovered")
				failing = false
			}
			backoff = 0
			continue
		case !failing:
			// One warning per state change, not one per attempt.
			d.logger.Warn("spill drain failing; backing off", "error", err)
			failing = true
		}
		backoff = nextBackoff(backoff, d.cfg.BackoffMin, d.cfg.BackoffMax)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// nextBackoff doubles the previous wait within [min, max] and adds up to
// 50% jitter, so replicas do not retry in lockstep.
func nextBackoff(prev, min, max time.Duration) time.Duration {
	next := prev * 2
	if next < min {
		next = min
	}
	if next > max {
		next = max
	}
	return next/2 + rand.N(next/2+1)
}

// Close stops Run and waits for it. It is idempotent.
func (d *Drainer) Close() {
	d.closeOnce.Do(func() { close(d.closing) })
	<-d.done
}

// round processes this consumer's own unacknowledged entries (failed
// earlier), then entries a crashed consumer left, then new ones.
func (d *Drainer) round(ctx context.Context) error {
	if err := d.q.ensureGroup(ctx); err != nil {
		return err
	}
	own, err := d.read(ctx, "0", 0)
	if err != nil {
		return err
	}
	if len(own) > 0 {
		return d.process(ctx, own)
	}
	claimed, _, err := d.q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: d.q.streamKey(), Group: DrainGroup, Consumer: d.cfg.Consumer,
		MinIdle: d.cfg.ClaimIdle, Start: "0-0", Count: d.cfg.Batch,
	}).Result()
	if err != nil {
		return translate(err)
	}
	if len(claimed) > 0 {
		d.logger.Info("reclaimed spilled orders from a stalled drainer", "count", len(claimed))
		return d.process(ctx, claimed)
	}
	fresh, err := d.read(ctx, ">", d.cfg.Block)
	if err != nil {
		return err
	}
	return d.process(ctx, fresh)
}

func (d *Drainer) read(ctx context.Context, id string, block time.Duration) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{Group: DrainGroup, Consumer: d.cfg.Consumer,
		Streams: []string{d.q.streamKey(), id}, Count: d.cfg.Batch, Block: block}
	if block == 0 {
		args.Block = -1 // no BLOCK: history reads return at once
	}
	res, err := d.q.rdb.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err)
	}
	var out []redis.XMessage
	for _, s := range res {
		out = append(out, s.Messages...)
	}
	return out, nil
}

// process places entries, Concurrency at a time. As one at a time, it
// starts no new entry after the first error and returns that error; the
// entries it did not settle stay pending for the next round.
func (d *Drainer) process(ctx context.Context, entries []redis.XMessage) error {
	if d.cfg.Concurrency <= 1 || len(entries) <= 1 {
		for _, e := range entries {
			if err := d.one(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return first != nil }
	sem := make(chan struct{}, d.cfg.Concurrency)
	var stopped error
	for _, e := range entries {
		sem <- struct{}{}
		if failed() || ctx.Err() != nil {
			<-sem
			stopped = ctx.Err()
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := d.one(ctx, e); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil {
		return stopped
	}
	return first
}

// one places the order of one entry and settles the entry.
func (d *Drainer) one(ctx context.Context, e redis.XMessage) error {
	id, err := uuid.Parse(fmt.Sprint(e.Values["order_id"]))
	if err != nil {
		d.logger.Error("spill entry without an order id; dropping it", "entry", e.ID)
		return d.q.done(ctx, e.ID, uuid.Nil)
	}
	o, err := d.q.Get(ctx, id)
	if errors.Is(err, order.ErrNotFound) {
		return d.q.done(ctx, e.ID, id) // placed and cleaned up by an earlier run
	}
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	if err != nil {
		// Poison: it can never be placed, and left pending it would be
		// re-read first every round and stall the entries behind it.
		d.metrics.died.Inc()
		d.logger.Error("spilled order cannot be decoded; marked dead", "order_id", id.String(), "error", err)
		return d.q.bury(ctx, e.ID, DeadEntry{OrderID: id, Attempts: 0, LastError: err.Error(), DiedAt: time.Now().UTC()})
	}
	attempts, err := d.q.rdb.HIncrBy(ctx, d.q.attemptsKey(), id.String(), 1).Result()
	if err != nil {
		return translate(err)
	}
	_, err = d.placer.Place(ctx, o)
	if errors.Is(err, order.ErrConflict) {
		err = d.resolveConflict(ctx, o)
	}
	if err == nil {
		if d.cfg.AfterPlace != nil {
			d.cfg.AfterPlace(id)
		}
		if ctx.Err() != nil {
			return ctx.Err() // killed between send and XACK: the entry stays pending
		}
		d.metrics.attempts.WithLabelValues("placed").Inc()
		d.metrics.drained.Inc()
		return d.q.done(ctx, e.ID, id)
	}
	if attempts >= d.cfg.MaxAttempts {
		d.metrics.attempts.WithLabelValues("dead").Inc()
		d.metrics.died.Inc()
		d.logger.Error("spilled order marked dead; replay it with ordertool spill replay",
			"order_id", id.String(), "attempts", attempts, "error", err)
		return d.q.bury(ctx, e.ID, DeadEntry{OrderID: id, Attempts: attempts, LastError: err.Error(), DiedAt: time.Now().UTC()})
	}
	d.metrics.attempts.WithLabelValues("retry").Inc()
	return fmt.Errorf("%w: order %s attempt %d: %w", errRetryLater, id, attempts, err)
}

// resolveConflict: the order exists already (an earlier attempt placed it
// and died before acknowledging), or its idempotency key belongs to
// another order (two retries of one request raced while RocketMQ was
// down). In the second case the order was still accepted (202), so it is
// placed without the key.
func (d *Drainer) resolveConflict(ctx context.Context, o *order.Order) error {
	_, err := d.orders.Get(ctx, o.ID)
	if err == nil {
		return nil
	}
	if !errors.Is(err, order.ErrNotFound) {
		return err
	}
	d.logger.Warn("spilled order's idempotency key belongs to another order; placing it without the key",
		"order_id", o.ID.String(), "idempotency_key", o.IdempotencyKey)
	dup := *o
	dup.IdempotencyKey, dup.RequestHash = "", ""
	_, err = d.placer.Place(ctx, &dup)
	if errors.Is(err, order.ErrConflict) {
		return nil
	}
	return err
}
