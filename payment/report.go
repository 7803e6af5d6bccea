package payment

import (
	"context"
	"database/sql"

	"github.com/txorder/txorder/order"
)

// CountRefundsRequired returns how many recorded payments must be refunded
// (their order was closed or already paid). Operators act on these.
func CountRefundsRequired(ctx context.Context, db *sql.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments WHERE status = ?`, string(StatusRefundRequired)).Scan(&n)
	return n, order.TranslateError(err)
}
