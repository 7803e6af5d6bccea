package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

type ordersData struct {
	Query, Client, Status string
	Statuses              []order.Status
	Page                  order.Page
	// NextURL continues the listing ("" on the last page).
	NextURL string
}

// ordersPage finds an order (by id, or by idempotency key and client) or
// lists orders by status, newest first.
func (c *Console) ordersPage(g *gin.Context) {
	q, client := strings.TrimSpace(g.Query("q")), strings.TrimSpace(g.Query("client"))
	status := g.Query("status")
	data := ordersData{Query: q, Client: client, Status: status,
		Statuses: []order.Status{order.StatusPendingPayment, order.StatusPaid, order.StatusClosed}}
	ctx, cancel := c.readCtx(g)
	defer cancel()
	if q != "" {
		if id, err := uuid.Parse(q); err == nil && client == "" {
			g.Redirect(http.StatusSeeOther, cookiePath+"/orders/"+id.String())
			return
		}
		if client == "" {
			c.render(g, http.StatusBadRequest, "orders", c.view(g, "Orders", "orders", view{Data: data,
				Problem: "That is not an order id. To find an order by idempotency key, give the API client's name too."}))
			return
		}
		loc, err := c.cfg.Orders.FindByKey(ctx, client, q)
		switch {
		case err == nil:
			g.Redirect(http.StatusSeeOther, cookiePath+"/orders/"+loc.Order.ID.String())
		case errors.Is(err, order.ErrNotFound):
			c.render(g, http.StatusNotFound, "orders", c.view(g, "Orders", "orders", view{Data: data,
				Problem: "No order was made with idempotency key " + q + " by client " + client + "."}))
		default:
			c.render(g, http.StatusServiceUnavailable, "orders", c.view(g, "Orders", "orders", view{Data: data,
				Problem: describe("lookup", err)}))
		}
		return
	}
	page, err := c.cfg.OrderRows.List(ctx, order.ListQuery{Status: order.Status(status), After: g.Query("after"), Limit: c.cfg.PageSize})
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, order.ErrInvalidCursor) {
			code = http.StatusBadRequest
		}
		c.render(g, code, "orders", c.view(g, "Orders", "orders", view{Data: data, Problem: describe("mysql", err)}))
		return
	}
	data.Page = page
	if page.Next != "" {
		v := url.Values{"after": {page.Next}}
		if status != "" {
			v.Set("status", status)
		}
		data.NextURL = cookiePath + "/orders?" + v.Encode()
	}
	c.render(g, http.StatusOK, "orders", c.view(g, "Orders", "orders", view{Data: data}))
}

// step is one line of an order's timeline.
type step struct {
	Name string
	At   *time.Time
	Done bool
	Note string
}

type orderData struct {
	Order    *order.Order
	Where    string
	Steps    []step
	Payments []payment.Payment
	Problems []string
}

// orderPage shows one order and its timeline, from what the system
// records: the row's times, where Redis holds it, the payments, the
// check-back's COMMIT, the publish tracker, and the fulfillment tables.
func (c *Console) orderPage(g *gin.Context) {
	id, err := uuid.Parse(g.Param("id"))
	if err != nil {
		c.errorPage(g, http.StatusNotFound, "Order", "orders", "Not an order id.")
		return
	}
	ctx, cancel := c.readCtx(g)
	defer cancel()
	loc, err := c.cfg.Orders.Get(ctx, id)
	if errors.Is(err, order.ErrNotFound) {
		c.errorPage(g, http.StatusNotFound, "Order", "orders", "No order "+id.String()+" in MySQL, the order cache or the spill queue.")
		return
	}
	if err != nil {
		c.errorPage(g, http.StatusServiceUnavailable, "Order", "orders", describe("order "+id.String(), err))
		return
	}
	o := loc.Order
	d := orderData{Order: o}
	created := o.CreatedAt
	d.Steps = append(d.Steps, step{Name: "placed", At: &created, Done: true, Note: "accepted by orderd (created_at)"})
	switch loc.Where {
	case order.OutcomeCached:
		d.Where = "ACCEPTED: in the Redis order cache, waiting for MySQL"
		d.Steps = append(d.Steps,
			step{Name: "cached", Done: true, Note: "held in the Redis order cache now; the sweeper or its check-back stores it when MySQL answers"},
			step{Name: "stored", Note: "not yet in MySQL"})
	case order.OutcomeQueued:
		d.Where = "QUEUED: in the Redis spill queue, waiting for RocketMQ"
		d.Steps = append(d.Steps,
			step{Name: "queued", Done: true, Note: "held in the spill queue now; see the Spill queue page for its attempts"},
			step{Name: "stored", Note: "not yet in MySQL"})
	default:
		d.Where = "STORED: a row in MySQL, status " + string(o.Status)
		d.Steps = append(d.Steps, step{Name: "stored", Done: true, Note: "a row in MySQL (when it got there is not recorded)"})
	}
	if loc.Where == order.OutcomeStored {
		c.storedSteps(ctx, &d)
	}
	c.render(g, http.StatusOK, "order", c.view(g, "Order "+id.String(), "orders", view{Data: d}))
}

// storedSteps adds what happened to a stored order after it was stored.
func (c *Console) storedSteps(ctx context.Context, d *orderData) {
	o := d.Order
	pays, err := c.cfg.Payments.ForOrder(ctx, o.ID)
	if err != nil {
		d.Problems = append(d.Problems, describe("payments", err))
	}
	d.Payments = pays
	d.Steps = append(d.Steps, step{Name: "paid", At: o.PaidAt, Done: o.PaidAt != nil, Note: paidNote(o, pays)})
	if o.ClosedAt != nil {
		d.Steps = append(d.Steps, step{Name: "closed", At: o.ClosedAt, Done: true, Note: "unpaid at its deadline; its half message rolled back"})
	}
	ms, err := c.cfg.OrderRows.Milestones(ctx, o.ID)
	if err != nil {
		d.Problems = append(d.Problems, describe("milestones", err))
	}
	if o.Status == order.StatusPaid || ms.CommitAnsweredAt != nil || ms.PublishedAt != nil {
		d.Steps = append(d.Steps, c.commitStep(ctx, d, o.ID, ms),
			step{Name: "event on the topic", At: ms.PublishedAt, Done: ms.PublishedAt != nil,
				Note: "seen on ORDER_PAID by the publish tracker"})
	}
	if c.cfg.DeadLetters == nil || o.Status != order.StatusPaid {
		return
	}
	p, err := c.cfg.DeadLetters.Progress(ctx, o.ID)
	if err != nil {
		d.Problems = append(d.Problems, describe("fulfillment", err))
		return
	}
	d.Steps = append(d.Steps, step{Name: "shipped", At: p.FirstShippedAt, Done: p.AppliedAt != nil, Note: shippedNote(p, c.cfg.DeadLetters.Group())})
}

// commitStep says how the order's half message was committed: by the
// payment's fast commit (remembered in Redis for a while, without a time)
// or by a check-back that answered COMMIT (recorded in MySQL).
func (c *Console) commitStep(ctx context.Context, d *orderData, id uuid.UUID, ms order.Milestones) step {
	st := step{Name: "event committed", At: ms.CommitAnsweredAt, Done: ms.CommitAnsweredAt != nil}
	fast := false
	if c.cfg.FastCommits != nil {
		var err error
		if fast, err = c.cfg.FastCommits.Committed(ctx, id); err != nil {
			d.Problems = append(d.Problems, describe("fast commit", err))
		}
	}
	switch {
	case fast && st.Done:
		st.Note = "the payment's fast commit was accepted; a check-back also answered COMMIT (the time shown)"
	case fast:
		st.Done, st.Note = true, "the payment's fast commit was accepted by the broker"
	case st.Done:
		st.Note = "last check-back that answered COMMIT"
	case c.cfg.FastCommits != nil:
		st.Note = "no check-back answered COMMIT and no fast commit is remembered (kept for fast_commit.coordinates_ttl); the reconciler republishes an event the topic never saw"
	default:
		st.Note = "no check-back answered COMMIT yet; the reconciler republishes an event the topic never saw"
	}
	return st
}

func paidNote(o *order.Order, pays []payment.Payment) string {
	switch {
	case o.PaidAt != nil:
		return "payment applied (paid_at)"
	case len(pays) > 0:
		return "payments recorded but none applied: see below"
	}
	return "no payment recorded"
}

func shippedNote(p listener.Progress, group string) string {
	switch {
	case p.AppliedAt == nil:
		return "not applied by consumer group " + group + " yet"
	case p.Shipments > 1:
		return "DUPLICATE: more than one shipment; the audit reports it"
	}
	return "applied by " + group + " at " + p.AppliedAt.UTC().Format(time.RFC3339Nano)
}
