package payment

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/strictjson"
	"github.com/txorder/txorder/order"
)

// MaxProviderTxnIDLen matches the payments.provider_txn_id column.
const MaxProviderTxnIDLen = 128

// Notification is what the payment provider tells us: provider
// transaction ProviderTxnID paid Amount (minor units) of Currency for
// order OrderID.
type Notification struct {
	ProviderTxnID string    `json:"provider_txn_id"`
	OrderID       uuid.UUID `json:"order_id"`
	Amount        int64     `json:"amount"`
	Currency      string    `json:"currency"`
}

// wireNotification keeps order_id as text so that only the canonical form
// is accepted (uuid.UUID also takes urn:, braces, no hyphens, upper case).
type wireNotification struct {
	ProviderTxnID *string `json:"provider_txn_id"`
	OrderID       *string `json:"order_id"`
	Amount        *int64  `json:"amount"`
	Currency      *string `json:"currency"`
}

// DecodeNotification decodes one JSON notification strictly: unknown
// fields, missing fields, nulls, wrong types, trailing data and keys given
// twice (the MAC covers the bytes, not one reading of them) are rejected,
// and the fields must pass Validate. Errors wrap ErrInvalidNotification.
func DecodeNotification(body []byte) (Notification, error) {
	var w wireNotification
	if err := strictjson.Decode(body, &w); err != nil {
		return Notification{}, fmt.Errorf("%w: %w", ErrInvalidNotification, err)
	}
	switch {
	case w.ProviderTxnID == nil:
		return Notification{}, fmt.Errorf("%w: provider_txn_id is required", ErrInvalidNotification)
	case w.OrderID == nil:
		return Notification{}, fmt.Errorf("%w: order_id is required", ErrInvalidNotification)
	case w.Amount == nil:
		return Notification{}, fmt.Errorf("%w: amount is required", ErrInvalidNotification)
	case w.Currency == nil:
		return Notification{}, fmt.Errorf("%w: currency is required", ErrInvalidNotification)
	}
	id, err := order.ParseID(*w.OrderID)
	if err != nil {
		return Notification{}, fmt.Errorf("%w: order_id: %w", ErrInvalidNotification, err)
	}
	n := Notification{ProviderTxnID: *w.ProviderTxnID, OrderID: id, Amount: *w.Amount, Currency: *w.Currency}
	if err := n.Validate(); err != nil {
		return Notification{}, err
	}
	return n, nil
}

// Validate checks the fields: provider_txn_id 1..128 printable ASCII
// characters without spaces, a non-nil order id, amount > 0, currency an
// ISO-4217 code of money in use (order.ValidCurrency). Errors wrap
// ErrInvalidNotification.
func (n Notification) Validate() error {
	if !validTxnID(n.ProviderTxnID) {
		return fmt.Errorf("%w: provider_txn_id must be 1 to %d printable ASCII characters without spaces",
			ErrInvalidNotification, MaxProviderTxnIDLen)
	}
	if n.OrderID == uuid.Nil {
		return fmt.Errorf("%w: order_id is the nil UUID", ErrInvalidNotification)
	}
	if n.Amount <= 0 {
		return fmt.Errorf("%w: amount must be a positive number of minor units", ErrInvalidNotification)
	}
	if !order.ValidCurrency(n.Currency) {
		return fmt.Errorf("%w: currency must be the ISO-4217 code of a currency in use, such as EUR", ErrInvalidNotification)
	}
	return nil
}

func validTxnID(s string) bool {
	if s == "" || len(s) > MaxProviderTxnIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
