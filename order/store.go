package order

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/group"
)

// Store is the MySQL persistence of orders. Every call runs under its own
// timeout (StoreConfig.Timeout) on top of the caller's context, so a MySQL
// that hangs turns into ErrUnavailable instead of a stuck request.
type Store struct {
	db           *sql.DB
	timeout      time.Duration
	view         *stateView // nil: off
	oneRoundTrip bool
	group        *group.Grouper[*Order, error] // nil: off
	groupStats   groupCounters
}

// StoreConfig tunes a Store.
type StoreConfig struct {
	// Timeout bounds each call, including its transaction. Default 2s.
	Timeout time.Duration
	// StateView serves check-backs of pending orders from memory
	// (CheckState); off by default.
	StateView StateViewConfig
	// OneRoundTrip sends Create's transaction (START TRANSACTION, the
	// inserts, COMMIT) as one multi-statement query: one round trip
	// instead of five. The pool's DSN must have multiStatements=true (and
	// should have interpolateParams=true). Off by default.
	OneRoundTrip bool
	// GroupCommit shares one transaction among concurrent Creates.
	GroupCommit GroupCommitConfig
}

// NewStore returns a Store on db. db must be a go-sql-driver/mysql pool
// opened with parseTime=true.
func NewStore(db *sql.DB, cfg StoreConfig) (*Store, error) {
	if db == nil {
		return nil, errors.New("order store: nil db")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	s := &Store{db: db, timeout: cfg.Timeout, oneRoundTrip: cfg.OneRoundTrip}
	if cfg.GroupCommit.Enabled {
		s.group = group.New(group.Config{Window: cfg.GroupCommit.Window, MaxBatch: cfg.GroupCommit.MaxBatch}, s.writeGroup)
	}
	if cfg.StateView.Enabled {
		s.view = newStateView(cfg.StateView)
	}
	return s, nil
}

// DB returns the pool, for packages that join order rows in their own
// transactions (payment).
func (s *Store) DB() *sql.DB { return s.db }

// Timeout returns the per-call timeout.
func (s *Store) Timeout() time.Duration { return s.timeout }

// Create inserts o with its items and its idempotency key in one
// transaction. It returns ErrConflict when the id or the (client, key) pair
// exists, ErrUnavailable when MySQL cannot be reached (the write may or may
// not have committed), or another error when MySQL refused it. With
// StoreConfig.GroupCommit the transaction may be shared with concurrent
// Creates (GroupCommitConfig); the answer is still this order's own.
func (s *Store) Create(ctx context.Context, o *Order) error {
	if s.group != nil {
		return s.createGrouped(ctx, o)
	}
	return s.writeGroup(ctx, []*Order{o})[0]
}

// Get returns the order with its items, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (*Order, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	o, err := getOrder(ctx, s.db, id)
	return o, translate(err)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func getOrder(ctx context.Context, q queryer, id uuid.UUID) (*Order, error) {
	o := &Order{ID: id}
	var status string
	var paidAt, closedAt sql.NullTime
	var clientID, key, hash sql.NullString
	// The owner is the order's own column: its idempotency key expires
	// after redis.idempotency_ttl (order.KeyExpirer), the owner never.
	err := q.QueryRowContext(ctx, `SELECT o.customer_id, o.currency, o.total_amount, o.status, o.payment_deadline,
			o.created_at, o.updated_at, o.paid_at, o.closed_at, o.client_id, k.idem_key, k.request_hash
		FROM orders o LEFT JOIN idempotency_keys k ON k.order_id = o.id
		WHERE o.id = ?`, id.String()).
		Scan(&o.CustomerID, &o.Currency, &o.Total, &status, &o.PaymentDeadline,
			&o.CreatedAt, &o.UpdatedAt, &paidAt, &closedAt, &clientID, &key, &hash)
	if err != nil {
		return nil, err
	}
	o.Status = Status(status)
	o.PaidAt = timePtr(paidAt)
	o.ClosedAt = timePtr(closedAt)
	o.ClientID, o.IdempotencyKey, o.RequestHash = clientID.String, key.String, hash.String
	rows, err := q.QueryContext(ctx, `SELECT sku, name, quantity, unit_price FROM order_items
		WHERE order_id = ? ORDER BY line_no`, id.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.SKU, &it.Name, &it.Quantity, &it.UnitPrice); err != nil {
			return nil, err
		}
		o.Items = append(o.Items, it)
	}
	return o, rows.Err()
}

// State is what a check-back needs of an order: one primary-key lookup,
// no items.
type State struct {
	ID              uuid.UUID
	Status          Status
	PaymentDeadline time.Time
}

// PastDeadline reports whether the payment window is over at now.
func (st State) PastDeadline(now time.Time) bool { return !now.Before(st.PaymentDeadline) }

// GetState returns the order's status and payment deadline, or ErrNotFound.
func (s *Store) GetState(ctx context.Context, id uuid.UUID) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	st := State{ID: id}
	var status string
	err := s.db.QueryRowContext(ctx, `SELECT status, payment_deadline FROM orders WHERE id = ?`, id.String()).
		Scan(&status, &st.PaymentDeadline)
	st.Status = Status(status)
	if err == nil && s.view != nil && st.Status == StatusPendingPayment {
		s.view.note(id, st.PaymentDeadline) // read-through: the next check needs no read
	}
	return st, translate(err)
}

// StateOf returns o's State.
func StateOf(o *Order) State {
	return State{ID: o.ID, Status: o.Status, PaymentDeadline: o.PaymentDeadline}
}

// IdempotencyRecord is what a stored idempotency key points at.
type IdempotencyRecord struct {
	OrderID     uuid.UUID
	RequestHash string
	// ClaimedAt is when the key was claimed (Redis records only).
	ClaimedAt time.Time
}

// LookupIdempotencyKey returns the record of (clientID, key) or ErrNotFound.
func (s *Store) LookupIdempotencyKey(ctx context.Context, clientID, key string) (IdempotencyRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var rec IdempotencyRecord
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT order_id, request_hash FROM idempotency_keys
		WHERE client_id = ? AND idem_key = ?`, clientID, key).Scan(&id, &rec.RequestHash)
	if err != nil {
		return rec, translate(err)
	}
	rec.OrderID, err = uuid.Parse(id)
	if err != nil {
		return rec, fmt.Errorf("stored order id %q: %w", id, err)
	}
	return rec, nil
}

// Execer is the part of *sql.DB and *sql.Tx that a status transition needs,
// so that payment can move an order inside its own transaction.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Transition moves the order from → to by compare-and-set and reports
// whether this call won. It returns won=false with a nil error when the
// order exists but is no longer in status from (someone else moved it),
// ErrNotFound when it does not exist, and ErrInvalidTransition when the
// state machine forbids from → to. Run it on s.DB() or on a transaction.
func (s *Store) Transition(ctx context.Context, ex Execer, id uuid.UUID, from, to Status, at time.Time) (won bool, err error) {
	if !from.CanTransitionTo(to) {
		return false, fmt.Errorf("%w: %s → %s", ErrInvalidTransition, from, to)
	}
	if ex == nil {
		ex = s.db
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	if s.view != nil {
		// Before the write, so that no check-back answers "pending" from
		// memory once the new status can be committed.
		s.view.forget(id)
	}
	col := "paid_at"
	if to == StatusClosed {
		col = "closed_at"
	}
	at = at.UTC()
	// FORCE INDEX (PRIMARY): on a small table MariaDB may pick the
	// (status, payment_deadline) index for this UPDATE, and then deadlocks
	// with a payment holding the row lock (18 deadlocks in 60 races,
	// measured; none with the hint).
	res, err := ex.ExecContext(ctx, `UPDATE orders FORCE INDEX (PRIMARY) SET status = ?, updated_at = ?, `+col+` = ?
		WHERE id = ? AND status = ?`, string(to), at, at, id.String(), string(from))
	if err != nil {
		return false, translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, translate(err)
	}
	if n == 1 {
		return true, nil
	}
	// Lost the race or no such order: tell the two apart.
	var one int
	if err := ex.QueryRowContext(ctx, `SELECT 1 FROM orders WHERE id = ?`, id.String()).Scan(&one); err != nil {
		return false, translate(err)
	}
	return false, nil
}

// MarkCommitAnswered records that a check-back answered COMMIT for a paid
// order (the last time it did). It is bookkeeping for operators and the
// reconciler; failing to write it must not change the answer.
func (s *Store) MarkCommitAnswered(ctx context.Context, id uuid.UUID, at time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx, `UPDATE orders FORCE INDEX (PRIMARY) SET commit_answered_at = ? WHERE id = ? AND status = 'PAID'`,
		at.UTC(), id.String())
	return translate(err)
}

// Ping checks that MySQL answers within the store timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return translate(s.db.PingContext(ctx))
}

// CountByStatus returns how many orders are in each status. It reads the
// (status, payment_deadline) index only, so it stays cheap for a gauge.
func (s *Store) CountByStatus(ctx context.Context) (map[Status]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM orders GROUP BY status`)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	out := map[Status]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, translate(err)
		}
		out[Status(st)] = n
	}
	return out, translate(rows.Err())
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullTime(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: t.UTC(), Valid: true}
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}
