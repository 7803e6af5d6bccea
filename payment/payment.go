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

// Outcome is what the provider was answered when a payment was first
// recorded. It is stored with the payment, so that a replay of the
// notification gets the same answer (Service.Notify), and it says why a
// REFUND_REQUIRED payment is one.
type Outcome string

// The outcomes of a recorded payment.
const (
	// OutcomeApplied: status APPLIED, the order became PAID (200).
	OutcomeApplied Outcome = "APPLIED"
	// OutcomeAmountMismatch: status AMOUNT_MISMATCH (ErrAmountMismatch, 422).
	OutcomeAmountMismatch Outcome = "AMOUNT_MISMATCH"
	// OutcomeOrderClosed: status REFUND_REQUIRED, the order was CLOSED
	// (ErrOrderClosed, 409).
	OutcomeOrderClosed Outcome = "ORDER_CLOSED"
	// OutcomeAlreadyPaid: status REFUND_REQUIRED, another provider
	// transaction had paid the order (ErrAlreadyPaid, 409).
	OutcomeAlreadyPaid Outcome = "ALREADY_PAID"
)

// Payment is a recorded payment notification.
type Payment struct {
	ID            int64
	ProviderTxnID string
	OrderID       uuid.UUID
	Amount        int64
	Currency      string
	Status        Status
	Outcome       Outcome
	ReceivedAt    time.Time
}

// Matches reports whether n is the notification p was recorded from: same
// provider transaction, order, amount and currency.
func (p Payment) Matches(n Notification) bool {
	return p.ProviderTxnID == n.ProviderTxnID && p.OrderID == n.OrderID && p.Amount == n.Amount && p.Currency == n.Currency
}

// Result is the outcome of Notify.
type Result struct {
	// Payment is the recorded payment: the one just written, or for a
	// replay (and ErrTxnReused) the one stored by the first delivery.
	Payment Payment
	// OrderStatus is the order's status after the call (for a replay, now).
	OrderStatus order.Status
	// Replayed is true when the provider transaction id was recorded
	// before: nothing was changed, Payment is the stored one, and the
	// error is the one the first delivery got (nil, ErrAmountMismatch,
	// ErrOrderClosed, ErrAlreadyPaid), or ErrTxnReused when this
	// notification is not the recorded one.
	Replayed bool
	// MarkedPaid is true only when this call recorded the payment and
	// moved its order PENDING_PAYMENT → PAID (committed). It is false for
	// every replay and every payment that was not applied: the one signal
	// that the order has just become paid.
	MarkedPaid bool
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
	// ErrTxnReused: the provider transaction id is recorded for another
	// order, amount or currency. Nothing was applied; the notification is
	// recorded in payment_conflicts for a person to look at.
	ErrTxnReused = errors.New("provider transaction id already recorded for a different payment")
)

// outcomeError is the error Notify returns for a payment recorded with
// outcome o. It is the same for the first delivery and every replay, so
// that both get the same answer; orderTotal and orderCurrency are the
// order's (they never change).
func outcomeError(p Payment, orderTotal int64, orderCurrency string) error {
	switch p.Outcome {
	case OutcomeApplied:
		return nil
	case OutcomeAmountMismatch:
		return fmt.Errorf("%w: paid %d %s, order total is %d %s", ErrAmountMismatch, p.Amount, p.Currency, orderTotal, orderCurrency)
	case OutcomeOrderClosed:
		return ErrOrderClosed
	case OutcomeAlreadyPaid:
		return ErrAlreadyPaid
	}
	return fmt.Errorf("payment %d has unknown outcome %q", p.ID, p.Outcome)
}
