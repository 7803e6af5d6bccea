package halfmsg

import (
	"context"

	"github.com/google/uuid"

	"github.com/txorder/txorder/payment"
)

// PaymentService is the payment service the webhook calls
// (payment.Service; the api.Payments interface).
type PaymentService interface {
	Verify(header string, body []byte) error
	Notify(ctx context.Context, n payment.Notification) (payment.Result, error)
}

// Releaser queues the release of an order's half message (the Committer).
type Releaser interface {
	Commit(id uuid.UUID)
}

// Payments wraps the payment service: after a notification that applied
// its payment and moved the order to PAID (the MySQL transaction has
// committed), it queues a COMMIT of the order's half message. A replayed
// notification, a refused one or an error queues nothing. Queueing never
// blocks, so the webhook's answer never waits on the broker.
type Payments struct {
	PaymentService
	releaser Releaser
}

// NewPayments returns svc with the fast commit after each applied payment.
func NewPayments(svc PaymentService, r Releaser) *Payments {
	return &Payments{PaymentService: svc, releaser: r}
}

// Notify calls the wrapped Notify and queues the fast commit when this
// call moved the order to PAID.
func (p *Payments) Notify(ctx context.Context, n payment.Notification) (payment.Result, error) {
	res, err := p.PaymentService.Notify(ctx, n)
	if err == nil && res.MarkedPaid {
		p.releaser.Commit(res.Payment.OrderID)
	}
	return res, err
}
