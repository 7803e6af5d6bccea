package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/order"
)

type spillData struct {
	State   string
	Pending []fallback.Entry
	Dead    []deadRow
	NextURL string
}

type deadRow struct {
	fallback.DeadEntry
	Order *order.Order
}

// spillPage lists the pending entries (oldest first, by stream id) or the
// dead ones (oldest first).
func (c *Console) spillPage(g *gin.Context) {
	state := g.DefaultQuery("state", "pending")
	data := spillData{State: state}
	ctx, cancel := c.readCtx(g)
	defer cancel()
	var (
		next string
		err  error
	)
	switch state {
	case "pending":
		data.Pending, next, err = c.cfg.Spill.PendingPage(ctx, g.Query("after"), int64(c.cfg.PageSize))
	case "dead":
		var dead []fallback.DeadEntry
		var orders []*order.Order
		dead, orders, next, err = c.cfg.Spill.DeadPage(ctx, g.Query("after"), c.cfg.PageSize)
		for i, d := range dead {
			data.Dead = append(data.Dead, deadRow{DeadEntry: d, Order: orders[i]})
		}
	default:
		c.errorPage(g, http.StatusBadRequest, "Spill queue", "spill", "state is pending or dead")
		return
	}
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, fallback.ErrInvalidCursor) {
			code = http.StatusBadRequest
		}
		c.render(g, code, "spill", c.view(g, "Spill queue", "spill", view{Data: data, Problem: describe("redis", err)}))
		return
	}
	if next != "" {
		data.NextURL = cookiePath + "/spill?" + url.Values{"state": {state}, "after": {next}}.Encode()
	}
	c.render(g, http.StatusOK, "spill", c.view(g, "Spill queue", "spill", view{Data: data}))
}

// confirmData is the confirmation step of a replay.
type confirmData struct {
	Action   string
	Question string
	Fields   map[string]string
	Back     string
}

func (c *Console) spillConfirm(g *gin.Context) {
	d := confirmData{Action: cookiePath + "/spill/replay", Back: cookiePath + "/spill?state=dead", Fields: map[string]string{}}
	if g.Query("all") == "1" {
		d.Question = "Put up to " + strconv.Itoa(c.cfg.ReplayBatch) + " dead spill entries (oldest first) back in the queue? The drainer places them as soon as RocketMQ takes their half messages."
		d.Fields["all"] = "1"
	} else {
		id, err := uuid.Parse(g.Query("order_id"))
		if err != nil {
			c.errorPage(g, http.StatusBadRequest, "Spill queue", "spill", "Not an order id.")
			return
		}
		d.Question = "Put dead spill entry " + id.String() + " back in the queue? The drainer places it as soon as RocketMQ takes its half message."
		d.Fields["order_id"] = id.String()
	}
	c.render(g, http.StatusOK, "confirm", c.view(g, "Confirm replay", "spill", view{Data: d}))
}

func (c *Console) spillReplay(g *gin.Context) {
	ctx, cancel := c.readCtx(g)
	defer cancel()
	who := admin(g)
	if g.PostForm("all") == "1" {
		n, remaining, err := c.cfg.Spill.ReplayDead(ctx, c.cfg.ReplayBatch)
		c.logger.Info("console: dead spill entries replayed", "admin", who, "replayed", n, "remaining", remaining, "error", errString(err))
		if err != nil {
			c.errorPage(g, http.StatusServiceUnavailable, "Spill queue", "spill", describe("replay", err)+" ("+strconv.Itoa(n)+" replayed before it)")
			return
		}
		g.Redirect(http.StatusSeeOther, cookiePath+"/spill?state=dead&done=spill_all&n="+strconv.Itoa(n)+"&left="+strconv.Itoa(remaining))
		return
	}
	id, err := uuid.Parse(g.PostForm("order_id"))
	if err != nil {
		c.errorPage(g, http.StatusBadRequest, "Spill queue", "spill", "Not an order id.")
		return
	}
	err = c.cfg.Spill.Replay(ctx, id)
	c.logger.Info("console: dead spill entry replayed", "admin", who, "order_id", id.String(), "error", errString(err))
	switch {
	case errors.Is(err, order.ErrNotFound):
		c.errorPage(g, http.StatusNotFound, "Spill queue", "spill", "Order "+id.String()+" is not a dead spill entry (replayed already?).")
	case err != nil:
		c.errorPage(g, http.StatusServiceUnavailable, "Spill queue", "spill", describe("replay", err))
	default:
		g.Redirect(http.StatusSeeOther, cookiePath+"/spill?state=pending&done=spill_one&id="+id.String())
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// flash builds the message of a finished action from its code and numbers
// (never from free text in the URL).
func flash(g *gin.Context) string {
	num := func(k string) string {
		n, err := strconv.Atoi(g.Query(k))
		if err != nil || n < 0 {
			return "?"
		}
		return strconv.Itoa(n)
	}
	id := func() string {
		if u, err := uuid.Parse(g.Query("id")); err == nil {
			return u.String()
		}
		if n, err := strconv.ParseInt(g.Query("id"), 10, 64); err == nil {
			return strconv.FormatInt(n, 10)
		}
		return "?"
	}
	switch g.Query("done") {
	case "spill_one":
		return "Order " + id() + " is back in the spill queue; the drainer places it when RocketMQ takes it."
	case "spill_all":
		return num("n") + " dead entries are back in the queue; " + num("left") + " remain dead."
	case "dl_one":
		return "Dead letter " + id() + ": " + map[string]string{"applied": "applied", "already_applied": "already applied, nothing to do"}[g.Query("outcome")] + "."
	case "dl_all":
		return num("n") + " dead letters replayed, " + num("failed") + " failed (see the list)."
	}
	return ""
}
