package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"
	"golang.org/x/text/currency"
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

// wireNotification keeps order_id as text so that only the canonical
// 36-character form is accepted (uuid.UUID also takes urn:, braces, no
// hyphens).
type wireNotification struct {
	ProviderTxnID *string `json:"provider_txn_id"`
	OrderID       *string `json:"order_id"`
	Amount        *int64  `json:"amount"`
	Currency      *string `json:"currency"`
}

// DecodeNotification decodes one JSON notification strictly: unknown
// fields, missing fields, nulls, wrong types and trailing data are
// rejected, and the fields must pass Validate. Errors wrap
// ErrInvalidNotification.
func DecodeNotification(body []byte) (Notification, error) {
	var w wireNotification
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Notification{}, fmt.Errorf("%w: %w", ErrInvalidNotification, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Notification{}, fmt.Errorf("%w: unexpected data after the JSON object", ErrInvalidNotification)
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
	if len(*w.OrderID) != 36 {
		return Notification{}, fmt.Errorf("%w: order_id is not a UUID", ErrInvalidNotification)
	}
	id, err := uuid.Parse(*w.OrderID)
	if err != nil {
		return Notification{}, fmt.Errorf("%w: order_id is not a UUID", ErrInvalidNotification)
	}
	n := Notification{ProviderTxnID: *w.ProviderTxnID, OrderID: id, Amount: *w.Amount, Currency: *w.Currency}
	if err := n.Validate(); err != nil {
		return Notification{}, err
	}
	return n, nil
}

// Validate checks the fields: provider_txn_id 1..128 printable ASCII
// characters without spaces, a non-nil order id, amount > 0, currency an
// upper-case ISO-4217 code. Errors wrap ErrInvalidNotification.
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
	if !validCurrency(n.Currency) {
		return fmt.Errorf("%w: currency must be an ISO-4217 code such as EUR", ErrInvalidNotification)
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

func validCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	_, err := currency.ParseISO(s)
	return err == nil
}
