package order

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// GroupCommitConfig groups concurrent Creates into one MySQL transaction:
// one multi-row insert per table and one commit, so one fsync of the redo
// log for the whole group. Each order keeps its own outcome: when MySQL
// refuses the group (a duplicate key, a deadlock, any error it answers),
// nothing of it was committed and every order is written again alone; when
// the group's outcome is unknown (the connection was lost or timed out), every
// order of it gets ErrUnavailable, exactly as a lone Create would.
type GroupCommitConfig struct {
	// Enabled turns grouping on. The zero value is off; orderd turns it
	// on by default (group_commit.enabled).
	Enabled bool
	// Window is how long the first order of a group waits for others
	// while another group is committing. An order that finds no group
	// committing is written at once, so a lone placement never waits.
	// Default 2ms.
	Window time.Duration
	// MaxBatch is the largest group; a full group is written at once.
	// Default 32.
	MaxBatch int
}

// createGrouped writes o through the store's grouper (internal/group): the
// first order of a group leads it, waits (see GroupCommitConfig.Window),
// writes the group and hands every member its own result.
func (s *Store) createGrouped(ctx context.Context, o *Order) error {
	err, ok := s.group.Do(ctx, o)
	if !ok {
		// The group may still commit this order: outcome unknown.
		return &UnavailableError{Err: fmt.Errorf("waiting for a group commit: %w", ctx.Err())}
	}
	return err
}

// GroupStats counts Create's transactions since the Store was made; with
// grouped commits off every transaction holds one order.
type GroupStats struct {
	// Transactions written (groups, rewrites of a refused group's orders
	// not included) and the orders they held: their ratio is the mean
	// group size.
	Transactions, Orders uint64
	// Refused groups (MySQL refused one of their orders; each order was
	// then written alone) and groups whose outcome was unknown.
	Refused, Unknown uint64
}

type groupCounters struct{ transactions, orders, refused, unknown atomic.Uint64 }

// GroupStats returns the store's group-commit counters.
func (s *Store) GroupStats() GroupStats {
	c := &s.groupStats
	return GroupStats{Transactions: c.transactions.Load(), Orders: c.orders.Load(),
		Refused: c.refused.Load(), Unknown: c.unknown.Load()}
}

// writeGroup writes orders in one transaction; on a refusal it writes each
// alone. It returns one error per order.
func (s *Store) writeGroup(ctx context.Context, orders []*Order) []error {
	errs := make([]error, len(orders))
	err := s.insertTx(ctx, orders)
	s.groupStats.transactions.Add(1)
	s.groupStats.orders.Add(uint64(len(orders)))
	if err != nil && len(orders) > 1 {
		if refused(err) {
			s.groupStats.refused.Add(1)
		} else {
			s.groupStats.unknown.Add(1)
		}
	}
	if err == nil || len(orders) == 1 {
		for i := range errs {
			errs[i] = err
		}
		s.noteCreated(orders, errs)
		return errs
	}
	if !refused(err) {
		// Unknown outcome: some or all of the group may be committed.
		// Writing the orders again would turn a committed one into a
		// conflict (and its half message into a ROLLBACK); every order
		// gets the same "may have committed" error a lone Create gets.
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	// MySQL refused the group and rolled it back: nothing of it is
	// stored. One order's fault must not fail its neighbours. The orders
	// are written again one by one within one more store timeout in all,
	// so that a MySQL that stalls now cannot hold the leader for the
	// group's size times the timeout: an order not tried by then was not
	// stored (its group was refused) and says so.
	fctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for i, o := range orders {
		if fctx.Err() != nil {
			errs[i] = &UnavailableError{Err: fmt.Errorf("group refused, and no time left to write the order alone: %w", ErrNotAttempted)}
			continue
		}
		errs[i] = s.insertTx(fctx, []*Order{o})
	}
	s.noteCreated(orders, errs)
	return errs
}

func (s *Store) noteCreated(orders []*Order, errs []error) {
	if s.view == nil {
		return
	}
	for i, o := range orders {
		if errs[i] == nil && o.Status == StatusPendingPayment {
			s.view.note(o.ID, o.PaymentDeadline)
		}
	}
}

// refused reports whether MySQL answered the transaction with an error
// (translated) that says none of it committed: every statement after a
// failed one is skipped and the transaction is rolled back. Errors that
// can end a COMMIT under way (the server shutting down, the connection
// killed, too many connections) leave the outcome unknown and are not
// refusals; a lock wait timeout, a deadlock or read-only mode can only
// stop an INSERT, before the COMMIT.
func refused(err error) bool {
	if errors.Is(err, ErrConflict) {
		return true
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1205, 1213, 1290: // lock wait timeout, deadlock, read-only
		return true
	}
	return !transientMySQLErrors[me.Number]
}

// insertTx writes orders (their rows, items and idempotency keys) in one
// transaction under the store's timeout and returns the translated error.
func (s *Store) insertTx(ctx context.Context, orders []*Order) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := buildInsert(orders)
	if s.oneRoundTrip {
		return s.execOneRoundTrip(ctx, q)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return translate(err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, st := range q.stmts {
		if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
			return translate(fmt.Errorf("%s: %w", st.what, err))
		}
	}
	return translate(tx.Commit())
}

// execOneRoundTrip sends START TRANSACTION, the inserts and COMMIT as one
// multi-statement query on one connection: one write and one read instead
// of five of each. MySQL skips the statements after a failed one, so the
// transaction is then still open on the connection: it is rolled back
// before the connection goes back to the pool, or the connection is
// dropped (MySQL rolls back a disconnected session's transaction).
func (s *Store) execOneRoundTrip(ctx context.Context, q insertQuery) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return translate(err)
	}
	defer conn.Close()
	var sqlText []byte
	var args []any
	sqlText = append(sqlText, "START TRANSACTION;"...)
	for _, st := range q.stmts {
		sqlText = append(sqlText, st.sql...)
		sqlText = append(sqlText, ';')
		args = append(args, st.args...)
	}
	sqlText = append(sqlText, "COMMIT"...)
	_, err = conn.ExecContext(ctx, string(sqlText), args...)
	if err == nil {
		return nil
	}
	var me *mysql.MySQLError
	switch {
	case refused(err):
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		_, rerr := conn.ExecContext(rctx, "ROLLBACK")
		cancel()
		if rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // drop it
		}
	case errors.As(err, &me):
		// An answer that leaves the outcome unknown: whatever the session
		// holds must not go back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return translate(err)
}

type insertStmt struct {
	what string
	sql  string
	args []any
}

type insertQuery struct{ stmts []insertStmt }

// buildInsert builds one multi-row insert per table for orders.
func buildInsert(orders []*Order) insertQuery {
	var q insertQuery
	ins := insertStmt{what: "insert orders", args: make([]any, 0, len(orders)*11)}
	b := []byte(`INSERT INTO orders (id, client_id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at, paid_at, closed_at) VALUES `)
	for i, o := range orders {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "(?,?,?,?,?,?,?,?,?,?,?)"...)
		ins.args = append(ins.args, o.ID.String(), nullString(o.ClientID), o.CustomerID, o.Currency, o.Total, string(o.Status),
			o.PaymentDeadline.UTC(), o.CreatedAt.UTC(), o.UpdatedAt.UTC(), nullTime(o.PaidAt), nullTime(o.ClosedAt))
	}
	ins.sql = string(b)
	q.stmts = append(q.stmts, ins)

	is := insertStmt{what: "insert order items"}
	b = []byte("INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price) VALUES ")
	n := 0
	for _, o := range orders {
		for j, it := range o.Items {
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = append(b, "(?,?,?,?,?,?)"...)
			is.args = append(is.args, o.ID.String(), j+1, it.SKU, it.Name, it.Quantity, it.UnitPrice)
		}
	}
	if n > 0 {
		is.sql = string(b)
		q.stmts = append(q.stmts, is)
	}

	ks := insertStmt{what: "insert idempotency keys"}
	b = []byte("INSERT INTO idempotency_keys (client_id, idem_key, request_hash, order_id, created_at) VALUES ")
	n = 0
	for _, o := range orders {
		if o.IdempotencyKey == "" {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, "(?,?,?,?,?)"...)
		ks.args = append(ks.args, o.ClientID, o.IdempotencyKey, o.RequestHash, o.ID.String(), o.CreatedAt.UTC())
	}
	if n > 0 {
		ks.sql = string(b)
		q.stmts = append(q.stmts, ks)
	}
	return q
}
