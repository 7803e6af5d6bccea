package order

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"
)

// MarkPublished records that the order's ORDER_PAID event reached the topic
// (the first time only). It reports whether this call set it.
func (s *Store) MarkPublished(ctx context.Context, id uuid.UUID, at time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.db.ExecContext(ctx, `UPDATE orders FORCE INDEX (PRIMARY) SET published_at = ?
		WHERE id = ? AND published_at IS NULL`, at.UTC(), id.String())
	if err != nil {
		return false, translate(err)
	}
	n, err := res.RowsAffected()
	return n == 1, translate(err)
}

// ForEachUnpublishedPaid runs publish for up to limit PAID orders whose
// event has not been seen on the topic, that were paid before paidBefore
// and whose last COMMIT answer to a check-back (if any) is older than that
// too (while the broker still checks, it is the broker's job), oldest first, and marks each one published once publish
// returned nil. The rows stay locked (FOR UPDATE SKIP LOCKED) until the
// batch is done, so several replicas never publish the same order at once.
// It returns how many orders were published; the first publish error ends
// the batch (the orders published before it are still marked).
func (s *Store) ForEachUnpublishedPaid(ctx context.Context, paidBefore time.Time, limit int,
	publish func(ctx context.Context, o *Order) error) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, translate(err)
	}
	defer func() { _ = tx.Rollback() }()
	ids, err := queryIDs(ctx, tx, `SELECT id FROM orders
		WHERE status = 'PAID' AND published_at IS NULL AND paid_at < ?
		  AND (commit_answered_at IS NULL OR commit_answered_at < ?)
		ORDER BY paid_at LIMIT ? FOR UPDATE SKIP LOCKED`, paidBefore.UTC(), paidBefore.UTC(), limit)
	if err != nil {
		return 0, err
	}
	published := 0
	var publishErr error
	for _, id := range ids {
		o, err := getOrder(ctx, tx, id)
		if err != nil {
			return 0, translate(err)
		}
		if publishErr = publish(ctx, o); publishErr != nil {
			break
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders FORCE INDEX (PRIMARY) SET published_at = ?
			WHERE id = ?`, time.Now().UTC(), id.String()); err != nil {
			return 0, translate(err)
		}
		published++
	}
	if err := tx.Commit(); err != nil {
		return 0, translate(err)
	}
	return published, publishErr
}

// OldestUnpublishedPaid returns when the longest-waiting paid order whose
// event was not seen on the topic was paid (ok false: none).
func (s *Store) OldestUnpublishedPaid(ctx context.Context) (paidAt time.Time, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var t sql.NullTime
	err = s.db.QueryRowContext(ctx, `SELECT MIN(paid_at) FROM orders WHERE status = 'PAID' AND published_at IS NULL`).Scan(&t)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, translate(err)
	}
	return t.Time, t.Valid, nil
}

// queryIDs runs a query selecting order ids (in a batch transaction) and
// returns them, translated errors and all.
func queryIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]uuid.UUID, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, translate(err)
		}
		if id, err := uuid.Parse(raw); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, translate(rows.Err())
}
