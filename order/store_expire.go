package order

import (
	"context"
	"database/sql"
	"time"

	"github.com/google/uuid"
)

// CloseExpired closes up to limit PENDING_PAYMENT orders whose payment
// deadline is before deadlineBefore, oldest deadline first, and returns the
// ids of those it closed. It is the backstop of the check-back (docs/design.md §4.2),
// which normally closes an unpaid order at its deadline: an order whose
// half message is gone (the broker gave up on it) gets no more check-backs
// and would otherwise stay pending forever.
//
// Each order is closed by Transition's compare-and-set (at becomes
// closed_at), so the state view forgets it as on any other close. The
// candidates are read with FOR UPDATE SKIP LOCKED in one transaction:
// several replicas never close the same order, and a row that a payment
// (or a check-back) holds is skipped, not waited for; the next round sees
// it again if it is still pending. The transaction is READ COMMITTED so
// that the range read takes no gap locks: under REPEATABLE READ it would
// lock the gap at the end of the (status, payment_deadline) index where
// every new order is inserted, and placements would wait for the round.
//
// It runs under the caller's deadline (not the store timeout: a batch is
// many statements). On an error nothing is closed (the transaction rolls
// back) and the error is ErrUnavailable or another translated error.
func (s *Store) CloseExpired(ctx context.Context, deadlineBefore time.Time, limit int, at time.Time) ([]uuid.UUID, error) {
	if limit <= 0 {
		return nil, nil
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, translate(err)
	}
	defer func() { _ = tx.Rollback() }()
	// The (status, payment_deadline) index serves both the range and the
	// order; the hint keeps MariaDB from choosing a full scan on a small
	// table, which would lock every row it reads, if only briefly.
	ids, err := queryIDs(ctx, tx, `SELECT id FROM orders FORCE INDEX (idx_orders_status_deadline)
		WHERE status = 'PENDING_PAYMENT' AND payment_deadline < ?
		ORDER BY payment_deadline LIMIT ? FOR UPDATE SKIP LOCKED`, deadlineBefore.UTC(), limit)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	closed := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		// The row is locked by this transaction, so the compare-and-set
		// wins unless the status changed before the lock was taken (it
		// cannot: a locking read sees the latest committed row).
		won, err := s.Transition(ctx, tx, id, StatusPendingPayment, StatusClosed, at)
		if err != nil {
			return nil, err
		}
		if won {
			closed = append(closed, id)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, translate(err)
	}
	return closed, nil
}
