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

// CountAmountMismatches returns how many recorded payments were not applied
// because their amount or currency differ from the order's. The provider
// captured that money and the order is unchanged: each one is refunded or
// settled by hand, like a REFUND_REQUIRED payment.
func CountAmountMismatches(ctx context.Context, db *sql.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments WHERE status = ?`, string(StatusAmountMismatch)).Scan(&n)
	return n, order.TranslateError(err)
}
