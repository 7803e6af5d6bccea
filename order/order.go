// Package order holds the order domain of txorder: the Order and its items,
// the status state machine, the MySQL store and the placement service.
//
// The package knows nothing of HTTP, Redis or RocketMQ. How an order is
// recorded durably is decided by the Placer the Service is given.
package order

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Status is the lifecycle state of an order row in MySQL.
type Status string

// The statuses of an order row. The only transitions are
// PENDING_PAYMENT → PAID and PENDING_PAYMENT → CLOSED; PAID and CLOSED are final.
const (
	StatusPendingPayment Status = "PENDING_PAYMENT"
	StatusPaid           Status = "PAID"
	StatusClosed         Status = "CLOSED"
)

// Valid reports whether s is one of the row statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPendingPayment, StatusPaid, StatusClosed:
		return true
	}
	return false
}

// CanTransitionTo reports whether the state machine allows s → next.
func (s Status) CanTransitionTo(next Status) bool {
	return s == StatusPendingPayment && (next == StatusPaid || next == StatusClosed)
}

// Item is one line of an order. UnitPrice is in minor units of the order's
// currency (cents for EUR, yen for JPY).
type Item struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
}

// Order is a customer's order. Money is integer minor units plus an
// ISO-4217 currency code; times are UTC.
type Order struct {
	ID              uuid.UUID  `json:"id"`
	CustomerID      string     `json:"customer_id"`
	Currency        string     `json:"currency"`
	Items           []Item     `json:"items"`
	Total           int64      `json:"total"`
	Status          Status     `json:"status"`
	PaymentDeadline time.Time  `json:"payment_deadline"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	PaidAt          *time.Time `json:"paid_at,omitempty"`
	ClosedAt        *time.Time `json:"closed_at,omitempty"`

	// ClientID is the API client that placed the order: its owner, the
	// only client that may read it (OwnedBy). It travels with the order
	// through the Redis cache and the spill queue into MySQL
	// (orders.client_id). IdempotencyKey and RequestHash travel with it so
	// that whoever finally writes it to MySQL (directly, from the Redis
	// cache or from the spill queue) records the key in the same
	// transaction.
	ClientID       string `json:"client_id"`
	IdempotencyKey string `json:"idempotency_key"`
	RequestHash    string `json:"request_hash"`
}

// OwnedBy reports whether client placed o. An order without a recorded
// owner (stored before owners were, without an idempotency key) belongs to
// no client; admin keys still see it.
func (o *Order) OwnedBy(client string) bool {
	return o.ClientID != "" && o.ClientID == client
}

// Pay moves a pending order to PAID. It fails with ErrInvalidTransition
// from any other status.
func (o *Order) Pay(at time.Time) error {
	if err := o.transition(StatusPaid, at); err != nil {
		return err
	}
	t := at.UTC()
	o.PaidAt = &t
	return nil
}

// Close moves a pending order to CLOSED (payment window over). It fails
// with ErrInvalidTransition from any other status.
func (o *Order) Close(at time.Time) error {
	if err := o.transition(StatusClosed, at); err != nil {
		return err
	}
	t := at.UTC()
	o.ClosedAt = &t
	return nil
}

func (o *Order) transition(next Status, at time.Time) error {
	if !o.Status.CanTransitionTo(next) {
		return fmt.Errorf("%w: %s → %s", ErrInvalidTransition, o.Status, next)
	}
	o.Status = next
	o.UpdatedAt = at.UTC()
	return nil
}

// ErrInvalidID: an order id that is not in canonical form.
var ErrInvalidID = errors.New("order ids are lower-case hyphenated UUIDs such as 0190b7a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b")

// ParseID parses an order id in its one canonical form, the 36-character
// lower-case hyphenated UUID the API answers with. uuid.Parse also takes
// upper case, braces, urn:uuid: and 32 hex digits; each spelling of one
// order would be a different string to a cache, a log search or a
// provider's records, so they are refused.
func ParseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id.String() != s {
		return uuid.Nil, ErrInvalidID
	}
	return id, nil
}

// PastDeadline reports whether the payment window of o is over at now.
func (o *Order) PastDeadline(now time.Time) bool {
	return !now.Before(o.PaymentDeadline)
}

// computeTotal sums the items. Validation bounds quantity and price so the
// sum cannot overflow int64 (100 × 1000 × 10^12 < 2^63).
func computeTotal(items []Item) int64 {
	var total int64
	for _, it := range items {
		total += int64(it.Quantity) * it.UnitPrice
	}
	return total
}
