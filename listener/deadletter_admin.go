package listener

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// DeadLetters is what an operator does with the fulfillment service's dead
// letters: list them by page, read one, replay one or all pending through
// the fulfillment handler (its transaction and idempotency guard). Both
// `ordertool dlq` and orderd's console use it. It needs only the
// fulfillment database, not the broker.
type DeadLetters struct {
	store   *DeadLetterStore
	applied *FulfillmentStore
	handler *Fulfillment
	group   string
}

// NewDeadLetters returns the dead letters of group (default "fulfillment")
// in db, each call bounded by timeout (0: 5s).
func NewDeadLetters(db *sql.DB, group string, timeout time.Duration, logger *slog.Logger) (*DeadLetters, error) {
	if group == "" {
		group = DefaultFulfillmentGroup
	}
	store, err := NewDeadLetterStore(db, timeout)
	if err != nil {
		return nil, err
	}
	applied, err := NewFulfillmentStore(db, timeout)
	if err != nil {
		return nil, err
	}
	h, err := NewFulfillment(applied, store, nil, logger, FulfillmentConfig{Group: group, Timeout: timeout})
	if err != nil {
		return nil, err
	}
	return &DeadLetters{store: store, applied: applied, handler: h, group: group}, nil
}

// Group returns the consumer group whose dead letters these are.
func (d *DeadLetters) Group() string { return d.group }

// List returns every dead letter of the group, oldest first (pendingOnly:
// those not replayed yet).
func (d *DeadLetters) List(ctx context.Context, pendingOnly bool) ([]DeadLetter, error) {
	return d.store.List(ctx, d.group, pendingOnly)
}

// Page returns up to limit dead letters of the group with ids above
// afterID, oldest first, bodies left out, and the id to continue after (0
// on the last page). Pending ones are read through the (consumer_group,
// replayed_at, id) index (migration 00003).
func (d *DeadLetters) Page(ctx context.Context, pendingOnly bool, afterID int64, limit int) ([]DeadLetter, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d.store.timeout)
	defer cancel()
	q := `SELECT id, consumer_group, original_msg_id, msg_key, '', reconsume_times, reason, first_seen_at, last_seen_at, replayed_at
		FROM dead_letters WHERE consumer_group = ? AND id > ?`
	if pendingOnly {
		q += ` AND replayed_at IS NULL`
	}
	rows, err := d.store.db.QueryContext(ctx, q+` ORDER BY id LIMIT ?`, d.group, afterID, limit+1)
	if err != nil {
		return nil, 0, order.TranslateError(err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		dl, err := scanDeadLetter(rows)
		if err != nil {
			return nil, 0, order.TranslateError(err)
		}
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, order.TranslateError(err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// Get returns one dead letter with its body, or order.ErrNotFound.
func (d *DeadLetters) Get(ctx context.Context, id int64) (DeadLetter, error) {
	return d.store.Get(ctx, id)
}

// CountPending returns how many dead letters of the group wait for a replay.
func (d *DeadLetters) CountPending(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d.store.timeout)
	defer cancel()
	var n int64
	err := d.store.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM dead_letters WHERE consumer_group = ? AND replayed_at IS NULL`,
		d.group).Scan(&n)
	return n, order.TranslateError(err)
}

// Replay re-applies dead letter id (Fulfillment.Replay).
func (d *DeadLetters) Replay(ctx context.Context, id int64) (ReplayOutcome, error) {
	return d.handler.Replay(ctx, id)
}

// ReplayResult is one dead letter's replay in ReplayPending.
type ReplayResult struct {
	ID      int64
	Outcome ReplayOutcome
	Err     error
}

// ReplayPending replays up to limit pending dead letters, oldest first, and
// returns each one's result. A dead letter that fails keeps failing the
// same way, so it does not stop the others; an error is returned only when
// the pending ones cannot be listed.
func (d *DeadLetters) ReplayPending(ctx context.Context, limit int) ([]ReplayResult, error) {
	page, _, err := d.Page(ctx, true, 0, limit)
	if err != nil {
		return nil, err
	}
	out := make([]ReplayResult, 0, len(page))
	for _, dl := range page {
		outcome, err := d.Replay(ctx, dl.ID)
		out = append(out, ReplayResult{ID: dl.ID, Outcome: outcome, Err: err})
	}
	return out, nil
}

// Progress is what the fulfillment service recorded of one order.
type Progress struct {
	// AppliedAt is when the group applied the order's event (nil: not yet).
	AppliedAt *time.Time
	// Shipments counts the order's shipments (more than one is a
	// duplicate the audit reports); FirstShippedAt is the first's time.
	Shipments      int
	FirstShippedAt *time.Time
}

// Progress returns what the group recorded of order id.
func (d *DeadLetters) Progress(ctx context.Context, id uuid.UUID) (Progress, error) {
	ctx, cancel := context.WithTimeout(ctx, d.store.timeout)
	defer cancel()
	var p Progress
	var applied, shipped sql.NullTime
	err := d.store.db.QueryRowContext(ctx, `SELECT consumed_at FROM consumed_messages WHERE consumer_group = ? AND order_id = ?`,
		d.group, id.String()).Scan(&applied)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return p, order.TranslateError(err)
	}
	err = d.store.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM shipments WHERE order_id = ?`, id.String()).
		Scan(&p.Shipments, &shipped)
	if err != nil {
		return p, order.TranslateError(err)
	}
	p.AppliedAt, p.FirstShippedAt = utcPtr(applied), utcPtr(shipped)
	return p, nil
}

// CountApplied returns how many orders the group has applied.
func (d *DeadLetters) CountApplied(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d.store.timeout)
	defer cancel()
	var n int64
	err := d.store.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM consumed_messages WHERE consumer_group = ?`, d.group).Scan(&n)
	return n, order.TranslateError(err)
}

func utcPtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}
