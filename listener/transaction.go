// Package listener holds txorder's RocketMQ callbacks: the transaction
// listener behind placement (ExecuteLocalTransaction, CheckLocalTransaction)
// and the placer that sends the half message; orderd's publish tracker and
// reconciler; and the downstream side, the fulfillment handler and the
// dead-letter recorder that fulfillmentd runs.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/order"
)

// Store is the part of the MySQL order store the listener uses.
type Store interface {
	Create(ctx context.Context, o *order.Order) error
	Get(ctx context.Context, id uuid.UUID) (*order.Order, error)
	GetState(ctx context.Context, id uuid.UUID) (order.State, error)
	// PendingState answers from memory (order.Store's state view) for an
	// order known to be PENDING_PAYMENT; false: ask MySQL.
	PendingState(id uuid.UUID) (order.State, bool)
	Transition(ctx context.Context, ex order.Execer, id uuid.UUID, from, to order.Status, at time.Time) (bool, error)
	MarkCommitAnswered(ctx context.Context, id uuid.UUID, at time.Time) error
}

// Cache is the Redis order cache (fallback.OrderCache).
type Cache interface {
	Put(ctx context.Context, o *order.Order) error
	Get(ctx context.Context, id uuid.UUID) (*order.Order, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

// TransactionConfig tunes a Transaction.
type TransactionConfig struct {
	// ExecuteTimeout bounds the local transaction of one placement
	// (MySQL write, or the cache write after it failed). Default 2s.
	ExecuteTimeout time.Duration
	// CheckTimeout bounds one check-back. The client answers check-backs
	// one at a time, so this is also how long one slow check delays all
	// the others. Default 500ms.
	CheckTimeout time.Duration
	// BreakerFailures consecutive "MySQL unavailable" results open the
	// circuit breaker; while it is open nobody waits on MySQL: placements
	// go straight to the cache and check-backs answer UNKNOWN at once.
	// Default 3.
	BreakerFailures uint32
	// BreakerOpenFor is how long the breaker stays open before one probe
	// is let through. Default 1s.
	BreakerOpenFor time.Duration
	// FastCommits, if set, tells whether a payment's fast commit already
	// released an order's event (halfmsg.Committer); a check-back COMMIT
	// for such an order writes a second copy and is counted.
	FastCommits interface {
		Committed(ctx context.Context, id uuid.UUID) (bool, error)
	}
	// HalfMessages, if set, is told the copy of the half message each
	// check-back answered UNKNOWN names (halfmsg.Recorder): the broker
	// re-puts the half message at every check, and only an END_TRANSACTION
	// naming the latest copy ends it. Moved must not block.
	HalfMessages interface {
		Moved(id uuid.UUID, msg *primitive.MessageExt)
	}
	// Now defaults to time.Now.
	Now func() time.Time
}

// Transaction implements primitive.TransactionListener for placements.
// It owns the decision table of docs/design.md §4.2.
type Transaction struct {
	store   Store
	cache   Cache
	cfg     TransactionConfig
	breaker *gobreaker.CircuitBreaker[struct{}]
	metrics *Metrics
	logger  *slog.Logger

	// pending maps an order id (the message key) to the placement waiting
	// on SendMessageInTransaction: Execute reads the order from it and
	// writes back which branch it took.
	pending sync.Map
	// counting bounds countCommitAfterFast's lookups in flight.
	counting chan struct{}
}

// placement is one in-flight placement.
type placement struct {
	order   *order.Order
	outcome order.Outcome // set by Execute; empty: Execute did not run
	err     error
}

// NewTransaction returns the listener. metrics may be nil (not recorded).
func NewTransaction(store Store, cache Cache, metrics *Metrics, logger *slog.Logger, cfg TransactionConfig) (*Transaction, error) {
	if store == nil || cache == nil || logger == nil {
		return nil, errors.New("listener: store, cache and logger are required")
	}
	if cfg.ExecuteTimeout <= 0 {
		cfg.ExecuteTimeout = 2 * time.Second
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 500 * time.Millisecond
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 3
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	t := &Transaction{store: store, cache: cache, cfg: cfg, metrics: metrics, logger: logger, counting: make(chan struct{}, 8)}
	t.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "mysql",
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
		// Only "MySQL is down" counts against the breaker; "MySQL said no"
		// (not found, conflict) proves it is up.
		IsSuccessful: func(err error) bool { return err == nil || !order.IsUnavailable(err) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			logger.Warn("mysql circuit breaker", "from", from.String(), "to", to.String())
			metrics.breakerState.Set(float64(to))
		},
	})
	return t, nil
}

// errBreakerOpen is returned instead of calling MySQL while it is known down.
var errBreakerOpen = &order.UnavailableError{Err: fmt.Errorf("circuit breaker open: %w", order.ErrNotAttempted)}

// mysql runs fn through the circuit breaker.
func (t *Transaction) mysql(fn func() error) error {
	_, err := t.breaker.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return errBreakerOpen
	}
	return err
}

// register announces a placement before its half message is sent.
func (t *Transaction) register(o *order.Order) *placement {
	p := &placement{order: o}
	t.pending.Store(o.ID.String(), p)
	return p
}

func (t *Transaction) unregister(o *order.Order) { t.pending.Delete(o.ID.String()) }

// ExecuteLocalTransaction runs the local transaction of a placement: write
// the order to MySQL, or to the Redis cache when MySQL is unavailable. It
// answers UNKNOWN in both cases (the event waits for payment) and ROLLBACK
// when the order could not be recorded anywhere or MySQL refused it.
func (t *Transaction) ExecuteLocalTransaction(msg *primitive.Message) primitive.LocalTransactionState {
	if strings.HasPrefix(msg.GetKeys(), warmUpKeyPrefix) {
		return primitive.RollbackMessageState // Placer.WarmUp's probe
	}
	v, ok := t.pending.Load(msg.GetKeys())
	if !ok {
		// Not a placement of this process: nothing was written for it.
		t.logger.Error("execute for an unknown placement", "key", msg.GetKeys())
		t.metrics.execute.WithLabelValues("unknown_placement").Inc()
		return primitive.RollbackMessageState
	}
	p := v.(*placement)
	// The client gives the callback no context; bound the MySQL write here.
	// The cache has its own timeout, so a MySQL write that used up its
	// budget still leaves the cache write all of its own.
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.ExecuteTimeout)
	defer cancel()
	log := t.logger.With("order_id", p.order.ID.String())

	// The idempotency key was claimed in Redis before the send
	// (order.Service.Place), so only the order is written here.
	err := t.mysql(func() error { return t.store.Create(ctx, p.order) })
	switch {
	case err == nil:
		p.outcome = order.OutcomeStored
		t.metrics.execute.WithLabelValues("stored").Inc()
		return primitive.UnknowState
	case order.IsUnavailable(err):
		// The MySQL write may still have committed (a timeout after the
		// commit was sent). The cache entry is then a harmless duplicate:
		// the check-back's insert is idempotent by order id.
		if cerr := t.cache.Put(context.Background(), p.order); cerr != nil {
			p.err = errors.Join(err, cerr)
			t.metrics.execute.WithLabelValues("refused").Inc()
			// Either write may have landed: the MySQL one if it timed out
			// after being sent, the Redis one if Redis applied it and the
			// reply was lost (the sweeper would then store it).
			if order.WriteMayHaveCommitted(err) || fallback.WriteMayHaveLanded(cerr) {
				// The row may exist. ROLLBACK would strand it with no half
				// message to close or announce it; UNKNOWN lets the
				// check-back decide from what MySQL really holds (absent →
				// ROLLBACK). The client is told 503 "outcome unknown": a
				// retry with the same key finds the order if it exists.
				p.err = fmt.Errorf("%w: %w", order.ErrOutcomeUnknown, p.err)
				log.Error("order refused, outcome unknown: mysql write timed out and redis unavailable",
					"mysql_error", err, "redis_error", cerr)
				return primitive.UnknowState
			}
			log.Error("order refused: mysql and redis unavailable", "mysql_error", err, "redis_error", cerr)
			return primitive.RollbackMessageState
		}
		p.outcome = order.OutcomeCached
		log.Warn("order cached in redis: mysql unavailable", "error", err)
		t.metrics.execute.WithLabelValues("cached").Inc()
		return primitive.UnknowState
	case errors.Is(err, order.ErrConflict):
		p.err = err
		t.metrics.execute.WithLabelValues("conflict").Inc()
		return primitive.RollbackMessageState
	default:
		p.err = err
		log.Error("order rejected by mysql", "error", err)
		t.metrics.execute.WithLabelValues("failed").Inc()
		return primitive.RollbackMessageState
	}
}

// CheckLocalTransaction answers the broker's check-back for a half message
// by the decision table of docs/design.md §4.2. The order is identified by the
// message key; the transaction id is not used (v2.1.2 decodes it wrongly).
func (t *Transaction) CheckLocalTransaction(msg *primitive.MessageExt) primitive.LocalTransactionState {
	start := time.Now()
	state, reason := t.check(msg.GetKeys())
	t.metrics.observeCheck(state, reason, time.Since(start))
	if state != primitive.UnknowState {
		t.logger.Info("check-back decided", "order_id", msg.GetKeys(), "msg_id", msg.MsgId,
			"answer", stateName(state), "reason", reason)
	} else if t.cfg.HalfMessages != nil {
		if id, err := uuid.Parse(msg.GetKeys()); err == nil {
			t.cfg.HalfMessages.Moved(id, msg)
		}
	}
	return state
}

func (t *Transaction) check(key string) (primitive.LocalTransactionState, string) {
	if strings.HasPrefix(key, warmUpKeyPrefix) {
		return primitive.RollbackMessageState, "warmup" // its END_TRANSACTION was lost
	}
	id, err := uuid.Parse(key)
	if err != nil {
		// Every half message of this group carries an order id as its key;
		// one without can never be resolved, so it is not ours to keep.
		t.logger.Error("check-back for a message without an order id key", "key", key)
		return primitive.RollbackMessageState, "bad_key"
	}
	// The client gives the callback no context; bound it here.
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.CheckTimeout)
	defer cancel()

	// An order the state view knows as pending needs no MySQL read: the
	// answer is UNKNOWN (or, past its deadline, the compare-and-set below).
	// Only while the breaker is closed, so that a memory hit never counts
	// as the half-open probe that MySQL is back.
	st, ok := order.State{}, false
	if t.breaker.State() == gobreaker.StateClosed {
		st, ok = t.store.PendingState(id)
	}
	if ok {
		return t.decide(ctx, st)
	}
	err = t.mysql(func() (err error) { st, err = t.store.GetState(ctx, id); return err })
	if errors.Is(err, order.ErrNotFound) {
		var (
			o      *order.Order
			reason string
		)
		o, reason, err = t.insertFromCache(ctx, id)
		if o == nil && err == nil {
			return primitive.RollbackMessageState, reason
		}
		if o != nil {
			st = order.StateOf(o)
		}
	}
	if err != nil {
		if errors.Is(err, errBreakerOpen) {
			return primitive.UnknowState, "breaker_open"
		}
		if order.IsUnavailable(err) {
			return primitive.UnknowState, "mysql_down"
		}
		if errors.Is(err, errCacheDown) {
			return primitive.UnknowState, "redis_down"
		}
		t.logger.Error("check-back failed", "order_id", key, "error", err)
		return primitive.UnknowState, "error"
	}
	return t.decide(ctx, st)
}

var errCacheDown = errors.New("order cache unavailable")

// insertFromCache handles "row absent": write the cached order to MySQL
// (idempotent by id) and drop the cache entry; nil order and nil error
// mean the order exists nowhere (ROLLBACK).
func (t *Transaction) insertFromCache(ctx context.Context, id uuid.UUID) (*order.Order, string, error) {
	cached, err := t.cache.Get(ctx, id)
	if errors.Is(err, order.ErrNotFound) {
		// Not cached. The cache sweeper (here or on another replica) may
		// have stored it and deleted the entry since MySQL was read: the
		// entry is deleted only after the row commits, so a second MySQL
		// miss now proves the local transaction never happened.
		var st order.State
		err = t.mysql(func() (err error) { st, err = t.store.GetState(ctx, id); return err })
		switch {
		case errors.Is(err, order.ErrNotFound):
			return nil, "absent", nil
		case err != nil:
			return nil, "", err
		}
		return &order.Order{ID: st.ID, Status: st.Status, PaymentDeadline: st.PaymentDeadline}, "", nil
	}
	if err != nil {
		return nil, "", errors.Join(errCacheDown, err)
	}
	err = t.mysql(func() error { return t.store.Create(ctx, cached) })
	if errors.Is(err, order.ErrConflict) {
		// Either the row is there after all (an earlier check inserted it
		// and died before deleting the cache entry, or Execute's timed-out
		// write did commit), or the idempotency key belongs to another
		// order: a retry accepted while MySQL was down whose first attempt
		// was stored. Keep the promise (every 202 order reaches MySQL) and
		// store it without the key.
		var row *order.Order
		if row, err = t.store.Get(ctx, id); errors.Is(err, order.ErrNotFound) {
			t.logger.Warn("cached order's idempotency key belongs to another order; storing it without the key",
				"order_id", id.String(), "idempotency_key", cached.IdempotencyKey)
			dup := *cached
			dup.IdempotencyKey, dup.RequestHash = "", ""
			err = t.mysql(func() error { return t.store.Create(ctx, &dup) })
		} else if err == nil {
			cached = row
		}
	}
	if err != nil {
		return nil, "", err
	}
	if err := t.cache.Delete(ctx, id); err != nil {
		// The row is safe in MySQL; a stale cache entry is re-deleted by the
		// next check (the insert above is idempotent).
		t.logger.Warn("delete cached order after insert", "order_id", id.String(), "error", err)
	}
	t.metrics.cacheInserted.Inc()
	t.logger.Info("cached order written to mysql", "order_id", id.String())
	return cached, "", nil
}

// decide answers for an order row.
func (t *Transaction) decide(ctx context.Context, o order.State) (primitive.LocalTransactionState, string) {
	now := t.cfg.Now()
	switch o.Status {
	case order.StatusPaid:
		return t.commit(ctx, o, now, "paid")
	case order.StatusClosed:
		return primitive.RollbackMessageState, "closed"
	}
	if !o.PastDeadline(now) {
		return primitive.UnknowState, "pending"
	}
	var won bool
	err := t.mysql(func() (err error) {
		won, err = t.store.Transition(ctx, nil, o.ID, order.StatusPendingPayment, order.StatusClosed, now)
		return err
	})
	switch {
	case err != nil:
		return primitive.UnknowState, "mysql_down"
	case won:
		return primitive.RollbackMessageState, "deadline_closed"
	}
	// Lost the compare-and-set: a payment got there first. Re-read to be
	// sure it is PAID (the only other way out of PENDING_PAYMENT is CLOSED).
	err = t.mysql(func() (err error) { o, err = t.store.GetState(ctx, o.ID); return err })
	if err != nil {
		return primitive.UnknowState, "mysql_down"
	}
	if o.Status == order.StatusPaid {
		return t.commit(ctx, o, now, "paid_at_deadline")
	}
	return primitive.RollbackMessageState, "closed"
}

// SweepCache writes cached orders to MySQL (each as a check-back would)
// and returns how many it stored. orderd runs it periodically so that
// orders accepted during an outage reach MySQL without waiting for their
// check-back, and so that a cache entry left behind by a write that timed
// out but committed is cleaned up. sweepConcurrency orders are stored at
// once: each waits on its own commit, which MySQL's group commit shares, so
// the drain after an outage is not one fsync per order. It starts no new
// order after the first sign that MySQL or Redis is down, and returns that
// error.
func (t *Transaction) SweepCache(ctx context.Context, ids []uuid.UUID) (int, error) {
	var (
		mu     sync.Mutex
		stored int
		first  error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, sweepConcurrency)
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return first != nil }
	for _, id := range ids {
		sem <- struct{}{}
		if failed() || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := t.sweepOne(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				stored++
			} else if first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return stored, first
}

// sweepConcurrency is how many cached orders SweepCache stores at once.
const sweepConcurrency = 8

// sweepOne stores one cached order, or drops its entry if the row exists.
func (t *Transaction) sweepOne(ctx context.Context, id uuid.UUID) error {
	// The same budget as the local transaction's write it redoes: a
	// check-back's short bound is there because check-backs are answered
	// one at a time, which the sweeper is not; with it, a MySQL that was
	// merely slow to commit (fsync under load) failed every sweep and
	// opened the breaker for everyone.
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ExecuteTimeout)
	defer cancel()
	err := t.mysql(func() error { _, err := t.store.GetState(ctx, id); return err })
	switch {
	case errors.Is(err, order.ErrNotFound):
		_, _, err = t.insertFromCache(ctx, id)
	case err == nil:
		// Already in MySQL: the cache entry is a leftover.
		err = t.cache.Delete(ctx, id)
	}
	return err
}

func (t *Transaction) commit(ctx context.Context, o order.State, now time.Time, reason string) (primitive.LocalTransactionState, string) {
	if err := t.store.MarkCommitAnswered(ctx, o.ID, now); err != nil {
		t.logger.Debug("record commit answer", "order_id", o.ID.String(), "error", err)
	}
	if t.cfg.FastCommits != nil {
		t.countCommitAfterFast(o.ID)
	}
	return primitive.CommitMessageState, reason
}

// countCommitAfterFast counts a check-back COMMIT for an order whose fast
// commit was accepted. The answer is COMMIT either way (an accepted fast
// commit may still be lost with a broker's unflushed page cache, and
// consumers are idempotent); this only counts the duplicates. It asks
// Redis off the check-back's path, a few at a time, because check-backs
// are answered one by one and a slow Redis must not slow them down; when
// too many are asking, this one is not counted.
func (t *Transaction) countCommitAfterFast(id uuid.UUID) {
	select {
	case t.counting <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-t.counting }()
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.CheckTimeout)
		defer cancel()
		if done, err := t.cfg.FastCommits.Committed(ctx, id); err == nil && done {
			t.metrics.commitAfterFast.Inc()
		}
	}()
}

func stateName(s primitive.LocalTransactionState) string {
	switch s {
	case primitive.CommitMessageState:
		return "commit"
	case primitive.RollbackMessageState:
		return "rollback"
	default:
		return "unknown"
	}
}

// BreakerState returns the MySQL circuit breaker's state: "closed",
// "half-open" or "open".
func (t *Transaction) BreakerState() string { return t.breaker.State().String() }
