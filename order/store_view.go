package order

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
)

// StateViewConfig turns on and tunes the Store's in-memory view of pending
// orders (see CheckState).
type StateViewConfig struct {
	// Enabled turns the view on. Off, CheckState is GetState.
	Enabled bool
	// Refresh is the period of RunStateView: each round asks MySQL which
	// orders were paid and not yet announced (an index range, small in
	// steady state) and drops them from the view. Default 500ms.
	Refresh time.Duration
	// MaxAge: the view answers only while its last successful refresh
	// started less than MaxAge ago; older, every CheckState reads MySQL.
	// Default 4 × Refresh.
	MaxAge time.Duration
	// FullEvery is the period of a full reload of every PENDING_PAYMENT
	// order (a covering index scan), which also learns orders placed by
	// other processes. Default 5m; the first refresh is always full.
	FullEvery time.Duration
	// PaidLimit bounds one incremental round; a round that hits it leaves
	// the view untrusted until a round that does not. Default 10,000.
	PaidLimit int
}

func (c StateViewConfig) withDefaults() StateViewConfig {
	if c.Refresh <= 0 {
		c.Refresh = 500 * time.Millisecond
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 4 * c.Refresh
	}
	if c.FullEvery <= 0 {
		c.FullEvery = 5 * time.Minute
	}
	if c.PaidLimit <= 0 {
		c.PaidLimit = 10000
	}
	return c
}

// stateView holds the orders known to be PENDING_PAYMENT, with their
// payment deadlines (which never change). It may hold an order that has
// since been paid or closed (a "stale pending"): a check-back then answers
// UNKNOWN and the broker asks again, which is always safe. It never claims
// PAID, CLOSED or absent: those are read from MySQL.
type stateView struct {
	cfg StateViewConfig

	mu       sync.RWMutex
	pending  map[uuid.UUID]time.Time
	trusted  time.Time // start of the last successful refresh
	lastFull time.Time // start of the last successful full load
	// While a full load runs, notes and forgets are also recorded here so
	// that the loaded snapshot does not undo them.
	loading   bool
	added     map[uuid.UUID]time.Time
	forgotten map[uuid.UUID]struct{}
}

func newStateView(cfg StateViewConfig) *stateView {
	return &stateView{cfg: cfg.withDefaults(), pending: map[uuid.UUID]time.Time{}}
}

func (v *stateView) lookup(id uuid.UUID, now time.Time) (time.Time, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if now.Sub(v.trusted) > v.cfg.MaxAge {
		return time.Time{}, false
	}
	d, ok := v.pending[id]
	return d, ok
}

func (v *stateView) note(id uuid.UUID, deadline time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pending[id] = deadline
	if v.loading {
		v.added[id] = deadline
	}
}

func (v *stateView) forget(id uuid.UUID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.pending, id)
	if v.loading {
		delete(v.added, id)
		v.forgotten[id] = struct{}{}
	}
}

func (v *stateView) size() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.pending)
}

// PendingState answers from the state view: ok is true when the view is
// on, fresh, and knows the order as PENDING_PAYMENT (with its deadline).
// Paid, closed, absent and unknown orders are never answered from memory:
// ok is false and the caller reads MySQL (GetState). A pending answer may
// be stale by up to one refresh when another process paid the order; it is
// never stale for a payment made through this Store (Transition drops the
// order first). Stale "pending" only delays a COMMIT to the next check.
func (s *Store) PendingState(id uuid.UUID) (State, bool) {
	if s.view == nil {
		return State{}, false
	}
	d, ok := s.view.lookup(id, time.Now())
	if !ok {
		return State{}, false
	}
	return State{ID: id, Status: StatusPendingPayment, PaymentDeadline: d}, true
}

// StateViewSize returns how many pending orders the view holds (0 when off).
func (s *Store) StateViewSize() int {
	if s.view == nil {
		return 0
	}
	return s.view.size()
}

// RunStateView refreshes the state view every StateViewConfig.Refresh until
// ctx ends; it returns at once when the view is off. Failed refreshes
// (MySQL down) leave the view untrusted until one succeeds.
func (s *Store) RunStateView(ctx context.Context) error {
	if s.view == nil {
		return nil
	}
	t := time.NewTicker(s.view.cfg.Refresh)
	defer t.Stop()
	for {
		_ = s.RefreshStateView(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RefreshStateView runs one refresh: a full reload of the pending orders
// when none was done for FullEvery, else the incremental "paid, not yet
// announced" round.
func (s *Store) RefreshStateView(ctx context.Context) error {
	v := s.view
	if v == nil {
		return nil
	}
	start := time.Now()
	v.mu.RLock()
	full := start.Sub(v.lastFull) >= v.cfg.FullEvery
	v.mu.RUnlock()
	if full {
		return s.loadStateView(ctx, start)
	}
	return s.refreshPaid(ctx, start)
}

// refreshPaid drops the orders paid but not yet announced (their event
// waits for the next check-back) from the view. An order can only be
// announced after a check-back read it as PAID in MySQL (or after the
// reconciler's grace of several check intervals), so every payment shows
// up here before it could matter.
func (s *Store) refreshPaid(ctx context.Context, start time.Time) error {
	v := s.view
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM orders
		WHERE status = 'PAID' AND published_at IS NULL LIMIT ?`, v.cfg.PaidLimit)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return translate(err)
		}
		if id, err := uuid.Parse(raw); err == nil {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return translate(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range ids {
		delete(v.pending, id)
	}
	if len(ids) >= v.cfg.PaidLimit {
		v.trusted = time.Time{}
		return errors.New("state view: more paid, unannounced orders than the limit")
	}
	v.trusted = start
	return nil
}

// loadStateView replaces the view with every PENDING_PAYMENT order, read
// from the (status, payment_deadline) index.
func (s *Store) loadStateView(ctx context.Context, start time.Time) error {
	v := s.view
	v.mu.Lock()
	v.loading = true
	v.added = map[uuid.UUID]time.Time{}
	v.forgotten = map[uuid.UUID]struct{}{}
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.loading, v.added, v.forgotten = false, nil, nil
		v.mu.Unlock()
	}()
	// A full load of a large backlog may take longer than one store call.
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT id, payment_deadline FROM orders WHERE status = 'PENDING_PAYMENT'`)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	next := make(map[uuid.UUID]time.Time, v.size())
	var raw []byte
	for rows.Next() {
		var d time.Time
		if err := rows.Scan(&raw, &d); err != nil {
			return translate(err)
		}
		id, err := uuid.ParseBytes(raw)
		if err != nil {
			continue
		}
		next[id] = d
	}
	if err := rows.Err(); err != nil {
		return translate(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, d := range v.added {
		next[id] = d
	}
	for id := range v.forgotten {
		delete(next, id)
	}
	v.pending = next
	v.lastFull = start
	v.trusted = start
	return nil
}
