package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// Refund is a payment recorded REFUND_REQUIRED, with what its order became.
type Refund struct {
	Payment
	// OrderStatus is the order's status now: CLOSED when the payment lost
	// to the deadline, PAID when another payment paid it first; empty if
	// the order row is missing.
	OrderStatus order.Status
}

// Reader lists recorded payments for operators; each call is bounded by
// its timeout.
type Reader struct {
	db      *sql.DB
	timeout time.Duration
}

// NewReader returns a Reader on the order database; timeout 0 means 2s.
func NewReader(db *sql.DB, timeout time.Duration) (*Reader, error) {
	if db == nil {
		return nil, errors.New("payment reader: nil db")
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &Reader{db: db, timeout: timeout}, nil
}

const paymentColumns = `p.id, p.provider_txn_id, p.order_id, p.amount, p.currency, p.status, p.received_at`

// RefundsRequired returns up to limit refunds, newest first, with ids below
// beforeID (0: from the newest), by keyset on the (status, id) index.
func (r *Reader) RefundsRequired(ctx context.Context, beforeID int64, limit int) ([]Refund, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	q := `SELECT ` + paymentColumns + `, COALESCE(o.status, '') FROM payments p LEFT JOIN orders o ON o.id = p.order_id
		WHERE p.status = ?`
	args := []any{string(StatusRefundRequired)}
	if beforeID > 0 {
		q += ` AND p.id < ?`
		args = append(args, beforeID)
	}
	rows, err := r.db.QueryContext(ctx, q+` ORDER BY p.id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, order.TranslateError(err)
	}
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		var rf Refund
		var st string
		if err := scanPayment(rows, &rf.Payment, &st); err != nil {
			return nil, err
		}
		rf.OrderStatus = order.Status(st)
		out = append(out, rf)
	}
	return out, order.TranslateError(rows.Err())
}

// ForOrder returns the payments recorded for an order, oldest first.
func (r *Reader) ForOrder(ctx context.Context, orderID uuid.UUID) ([]Payment, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, `SELECT `+paymentColumns+` FROM payments p WHERE p.order_id = ? ORDER BY p.id`,
		orderID.String())
	if err != nil {
		return nil, order.TranslateError(err)
	}
	defer rows.Close()
	var out []Payment
	for rows.Next() {
		var p Payment
		if err := scanPayment(rows, &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, order.TranslateError(rows.Err())
}

// CountRefundsRequired returns how many payments must be refunded.
func (r *Reader) CountRefundsRequired(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return CountRefundsRequired(ctx, r.db)
}

func scanPayment(rows *sql.Rows, p *Payment, extra ...any) error {
	var id, status string
	dest := append([]any{&p.ID, &p.ProviderTxnID, &id, &p.Amount, &p.Currency, &status, &p.ReceivedAt}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return order.TranslateError(err)
	}
	oid, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("payment %d: stored order id %q: %w", p.ID, id, err)
	}
	p.OrderID, p.Status, p.ReceivedAt = oid, Status(status), p.ReceivedAt.UTC()
	return nil
}
