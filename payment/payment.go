// Package payment records payment notifications from the payment provider
// and marks orders paid: webhook signature verification, the notification
// body, and Service.Notify, which records the payment and moves the order
// PENDING_PAYMENT → PAID in one MySQL transaction.
//
// A payment that cannot be applied is still recorded, so that nothing the
// provider charged is forgotten: AMOUNT_MISMATCH when it does not match the
// order, REFUND_REQUIRED when the order is closed or already paid.
package payment

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// Status is what became of a recorded payment.
type Status string

// The statuses of a payment row.
const (
	// StatusApplied: the payment moved its order to PAID.
	StatusApplied Status = "APPLIED"
	// StatusAmountMismatch: amount or currency differ from the order's;
	// the order was left as it was.
	StatusAmountMismatch Status = "AMOUNT_MISMATCH"
	// StatusRefundRequired: the order was CLOSED, or already PAID by
	// another provider transaction; the money must go back.
	StatusRefundRequired Status = "REFUND_REQUIRED"
)

// Payment is a recorded payment notification.
type Payment struct {
	ID            int64
	ProviderTxnID string
	OrderID       uuid.UUID
	Amount        int64
	Currency      string
	Status        Status
	ReceivedAt    time.Time
}

// Result is the outcome of Notify.
type Result struct {
	// Payment is the recorded payment: the one just written, or for a
	// replay the one stored by the first delivery.
	Payment Payment
	// OrderStatus is the order's status after the call.
	OrderStatus order.Status
	// Replayed is true when the provider transaction id was recorded
	// before: nothing was changed and Payment is the stored one.
	Replayed bool
}

// Sentinel errors of the payment domain. Callers test them with errors.Is.
// The store's order.ErrUnavailable passes through unchanged.
var (
	// ErrBadSignature: the X-Signature header is missing, malformed,
	// does not match the body or is outside the time tolerance.
	ErrBadSignature = errors.New("bad webhook signature")
	// ErrInvalidNotification: the body is not a well-formed notification.
	ErrInvalidNotification = errors.New("invalid payment notification")
	// ErrOrderNotFound: no order row with that id. Nothing was recorded;
	// the provider should retry (an order accepted while MySQL was down
	// reaches MySQL within one check interval).
	ErrOrderNotFound = errors.New("order not found")
	// ErrAmountMismatch: the payment was recorded as AMOUNT_MISMATCH.
	ErrAmountMismatch = errors.New("payment amount or currency does not match the order")
	// ErrRefundRequired: the payment was recorded as REFUND_REQUIRED.
	// It is wrapped by ErrOrderClosed and ErrAlreadyPaid, which say why.
	ErrRefundRequired = errors.New("payment requires a refund")
	// ErrOrderClosed: the order was CLOSED (payment window over); the
	// payment was recorded as REFUND_REQUIRED.
	ErrOrderClosed = fmt.Errorf("%w: the order is closed", ErrRefundRequired)
	// ErrAlreadyPaid: another provider transaction paid the order first
	// (a double charge); the payment was recorded as REFUND_REQUIRED.
	ErrAlreadyPaid = fmt.Errorf("%w: the order is already paid", ErrRefundRequired)
)
