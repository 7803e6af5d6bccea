package order

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// PaidEvent is the body of an ORDER_PAID message. It is written when the
// half message is sent (at placement) and released only once the order is
// paid, so it carries the order as placed and no status: the topic is the
// status. The message key is the order id.
type PaidEvent struct {
	OrderID    uuid.UUID `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Currency   string    `json:"currency"`
	Total      int64     `json:"total"`
	Items      []Item    `json:"items"`
	PlacedAt   time.Time `json:"placed_at"`
}

// EventOf returns the event announcing o once it is paid.
func EventOf(o *Order) PaidEvent {
	return PaidEvent{OrderID: o.ID, CustomerID: o.CustomerID, Currency: o.Currency,
		Total: o.Total, Items: o.Items, PlacedAt: o.CreatedAt}
}

// DecodePaidEvent parses and sanity-checks a message body. Consumers treat
// an error as a poison message.
func DecodePaidEvent(body []byte) (PaidEvent, error) {
	var e PaidEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return e, fmt.Errorf("decode ORDER_PAID body: %w", err)
	}
	if e.OrderID == uuid.Nil || e.Currency == "" || e.Total <= 0 || len(e.Items) == 0 {
		return e, fmt.Errorf("ORDER_PAID body for order %q lacks order_id, currency, total or items", e.OrderID)
	}
	return e, nil
}
