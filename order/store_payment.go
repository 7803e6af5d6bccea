package order

import (
	"context"
	"database/sql"
	"errors"

	"github.com/google/uuid"
)

// GetForUpdate reads the order row id inside tx and locks it (SELECT … FOR
// UPDATE) until tx ends, so that the caller decides on a status that no
// one else can change before it commits: a payment against the deadline
// closer, two payments of the same order against each other. Items,
// idempotency key and request hash are not loaded. It returns ErrNotFound
// when there is no such row and ErrUnavailable when MySQL cannot be
// reached; tx runs under the caller's deadline.
func (s *Store) GetForUpdate(ctx context.Context, tx *sql.Tx, id uuid.UUID) (*Order, error) {
	if tx == nil {
		return nil, errors.New("order store: GetForUpdate needs a transaction")
	}
	o := &Order{ID: id}
	var status string
	var paidAt, closedAt sql.NullTime
	err := tx.QueryRowContext(ctx, `SELECT customer_id, currency, total_amount, status, payment_deadline,
			created_at, updated_at, paid_at, closed_at
		FROM orders WHERE id = ? FOR UPDATE`, id.String()).
		Scan(&o.CustomerID, &o.Currency, &o.Total, &status, &o.PaymentDeadline,
			&o.CreatedAt, &o.UpdatedAt, &paidAt, &closedAt)
	if err != nil {
		return nil, translate(err)
	}
	o.Status = Status(status)
	o.PaidAt = timePtr(paidAt)
	o.ClosedAt = timePtr(closedAt)
	return o, nil
}

// TranslateError maps an error of the database/sql driver to this
// package's errors exactly as the order store does: no rows → ErrNotFound,
// duplicate key → ErrConflict, unreachable, timed out or transient (lock
// wait, deadlock, shutdown) → ErrUnavailable; anything else is returned
// as is. It exists for packages that keep their own rows in the order
// database (payment), so that driver errors are classified in one place.
func TranslateError(err error) error { return translate(err) }
