package console

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/txorder/txorder/order"
)

// overview is the Overview page's content, also served as JSON to its
// refresh script. A figure whose dependency cannot be read is null and its
// reason is in Unknown.
type overview struct {
	GeneratedAt time.Time          `json:"generated_at"`
	Checks      []checkView        `json:"checks"`
	Breakers    []breakerView      `json:"breakers"`
	Figures     map[string]*int64  `json:"figures"`
	Unknown     map[string]string  `json:"unknown"`
	Rates       []rateView         `json:"rates"`
	Lag         map[string]*string `json:"lag"`
}

type checkView struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

type breakerView struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// Figure names, in the order the page shows them.
const (
	figCacheSize    = "order_cache_size"
	figSpillPending = "spill_pending"
	figSpillDead    = "spill_dead"
	figDeadLetters  = "dead_letters_pending"
	figRefunds      = "refunds_required"
	figPending      = "orders_pending_payment"
	figPaid         = "orders_paid"
	figClosed       = "orders_closed"
	figUnapplied    = "paid_not_applied"
	lagUnpublished  = "oldest_paid_event_not_on_topic"
)

// collect reads every figure at once, each bounded by the console timeout,
// so a dependency that hangs costs the page one timeout, not one each.
func (c *Console) collect(ctx context.Context) overview {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	ov := overview{GeneratedAt: c.cfg.Now().UTC(), Figures: map[string]*int64{}, Unknown: map[string]string{},
		Lag: map[string]*string{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	set := func(name string, v int64, err error, what string) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			ov.Figures[name] = nil
			ov.Unknown[name] = describe(what, err)
			return
		}
		ov.Figures[name] = &v
	}
	do := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}

	ov.Checks = make([]checkView, len(c.cfg.Checks))
	for i, ch := range c.cfg.Checks {
		do(func() {
			err := ch.Probe(ctx)
			v := checkView{Name: ch.Name, Up: err == nil}
			if err != nil {
				v.Error = err.Error()
			}
			ov.Checks[i] = v
		})
	}
	do(func() {
		n, err := c.cfg.Cache.Size(ctx)
		set(figCacheSize, n, err, "redis")
	})
	do(func() {
		pending, dead, err := c.cfg.Spill.Depth(ctx)
		set(figSpillPending, pending, err, "redis")
		set(figSpillDead, dead, err, "redis")
	})
	do(func() {
		n, err := c.cfg.Payments.CountRefundsRequired(ctx)
		set(figRefunds, n, err, "mysql")
	})
	var applied int64
	var appliedErr error
	if c.cfg.DeadLetters != nil {
		do(func() {
			n, err := c.cfg.DeadLetters.CountPending(ctx)
			set(figDeadLetters, n, err, "fulfillment database")
		})
		do(func() { applied, appliedErr = c.cfg.DeadLetters.CountApplied(ctx) })
	}
	var byStatus map[order.Status]int64
	var statusErr error
	do(func() { byStatus, statusErr = c.cfg.OrderRows.CountByStatus(ctx) })
	do(func() {
		at, ok, err := c.cfg.OrderRows.OldestUnpublishedPaid(ctx)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			ov.Lag[lagUnpublished] = nil // shown as unknown
			ov.Unknown[lagUnpublished] = describe("mysql", err)
		case ok:
			s := c.cfg.Now().Sub(at).Round(time.Second).String()
			ov.Lag[lagUnpublished] = &s
		default:
			none := "none"
			ov.Lag[lagUnpublished] = &none
		}
	})
	wg.Wait()

	set(figPending, byStatus[order.StatusPendingPayment], statusErr, "mysql")
	set(figPaid, byStatus[order.StatusPaid], statusErr, "mysql")
	set(figClosed, byStatus[order.StatusClosed], statusErr, "mysql")
	if c.cfg.DeadLetters != nil {
		err := statusErr
		if err == nil {
			err = appliedErr
		}
		set(figUnapplied, max(0, byStatus[order.StatusPaid]-applied), err, "mysql")
	}
	for _, b := range c.cfg.Breakers {
		ov.Breakers = append(ov.Breakers, breakerView{Name: b.Name, State: b.State()})
	}
	ov.Rates = c.rates.perMinute()
	return ov
}

// overviewRow is one line of the figures table.
type overviewRow struct {
	Key, Label, Help string
	Value            *int64
	Unknown          string
	Link             string
}

type overviewData struct {
	overview
	Rows []overviewRow
}

var figureRows = []overviewRow{
	{Key: figCacheSize, Label: "Order cache (Redis)", Help: "orders accepted while MySQL was down, waiting to be stored", Link: "/console/orders"},
	{Key: figSpillPending, Label: "Spill queue: pending", Help: "orders waiting for RocketMQ; the drainer places them", Link: "/console/spill?state=pending"},
	{Key: figSpillDead, Label: "Spill queue: dead", Help: "orders the drainer gave up on; replay them", Link: "/console/spill?state=dead"},
	{Key: figDeadLetters, Label: "Dead letters pending", Help: "fulfillment messages waiting for a replay", Link: "/console/dead-letters?pending=1"},
	{Key: figRefunds, Label: "Refunds required", Help: "payments that lost to the deadline or paid twice", Link: "/console/refunds"},
	{Key: figPending, Label: "Orders pending payment", Help: "in MySQL", Link: "/console/orders?status=PENDING_PAYMENT"},
	{Key: figPaid, Label: "Orders paid", Help: "in MySQL", Link: "/console/orders?status=PAID"},
	{Key: figClosed, Label: "Orders closed", Help: "in MySQL", Link: "/console/orders?status=CLOSED"},
	{Key: figUnapplied, Label: "Fulfillment lag: paid, not applied", Help: "paid orders the fulfillment group has not applied yet"},
}

func (c *Console) overviewPage(g *gin.Context) {
	ov := c.collect(g.Request.Context())
	data := overviewData{overview: ov}
	for _, r := range figureRows {
		if _, ok := ov.Figures[r.Key]; !ok {
			if _, unknown := ov.Unknown[r.Key]; !unknown {
				continue // not configured (no dead letters)
			}
		}
		r.Value, r.Unknown = ov.Figures[r.Key], ov.Unknown[r.Key]
		data.Rows = append(data.Rows, r)
	}
	c.render(g, http.StatusOK, "overview", c.view(g, "Overview", "overview", view{Data: data}))
}

func (c *Console) overviewJSON(g *gin.Context) {
	g.JSON(http.StatusOK, c.collect(g.Request.Context()))
}
