package console

import (
	"errors"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
)

type deadLettersData struct {
	Pending bool
	Group   string
	List    []listener.DeadLetter
	NextURL string
}

const noDeadLetters = "This orderd has no access to the fulfillment database (console.dead_letters.enabled is off); use ordertool dlq list."

func (c *Console) deadLettersPage(g *gin.Context) {
	if c.cfg.DeadLetters == nil {
		c.errorPage(g, http.StatusNotFound, "Dead letters", "deadletters", noDeadLetters)
		return
	}
	pending := g.Query("pending") == "1"
	after, _ := strconv.ParseInt(g.Query("after"), 10, 64)
	ctx, cancel := c.readCtx(g)
	defer cancel()
	list, next, err := c.cfg.DeadLetters.Page(ctx, pending, max(after, 0), c.cfg.PageSize)
	data := deadLettersData{Pending: pending, Group: c.cfg.DeadLetters.Group(), List: list}
	if err != nil {
		c.render(g, http.StatusServiceUnavailable, "deadletters", c.view(g, "Dead letters", "deadletters", view{Data: data,
			Problem: describe("fulfillment database", err)}))
		return
	}
	if next > 0 {
		data.NextURL = cookiePath + "/dead-letters?after=" + strconv.FormatInt(next, 10)
		if pending {
			data.NextURL += "&pending=1"
		}
	}
	c.render(g, http.StatusOK, "deadletters", c.view(g, "Dead letters", "deadletters", view{Data: data}))
}

type deadLetterData struct {
	Letter listener.DeadLetter
	// Body is the message body as text, or a note when it is binary.
	Body string
}

func (c *Console) deadLetterPage(g *gin.Context) {
	if c.cfg.DeadLetters == nil {
		c.errorPage(g, http.StatusNotFound, "Dead letters", "deadletters", noDeadLetters)
		return
	}
	id, err := strconv.ParseInt(g.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		c.errorPage(g, http.StatusNotFound, "Dead letter", "deadletters", "Not a dead letter id.")
		return
	}
	ctx, cancel := c.readCtx(g)
	defer cancel()
	d, err := c.cfg.DeadLetters.Get(ctx, id)
	if errors.Is(err, order.ErrNotFound) {
		c.errorPage(g, http.StatusNotFound, "Dead letter", "deadletters", "No dead letter "+strconv.FormatInt(id, 10)+".")
		return
	}
	if err != nil {
		c.errorPage(g, http.StatusServiceUnavailable, "Dead letter", "deadletters", describe("fulfillment database", err))
		return
	}
	body := string(d.Body)
	if !utf8.Valid(d.Body) {
		body = "(" + strconv.Itoa(len(d.Body)) + " bytes, not text; ordertool dlq list --json shows it in base64)"
	}
	const maxShown = 64 << 10
	if len(body) > maxShown {
		body = body[:maxShown] + "… (cut at 64 KiB)"
	}
	c.render(g, http.StatusOK, "deadletter", c.view(g, "Dead letter "+strconv.FormatInt(id, 10), "deadletters",
		view{Data: deadLetterData{Letter: d, Body: body}}))
}

func (c *Console) deadLetterConfirm(g *gin.Context) {
	if c.cfg.DeadLetters == nil {
		c.errorPage(g, http.StatusNotFound, "Dead letters", "deadletters", noDeadLetters)
		return
	}
	d := confirmData{Action: cookiePath + "/dead-letters/replay", Back: cookiePath + "/dead-letters?pending=1", Fields: map[string]string{}}
	if g.Query("all") == "1" {
		d.Question = "Re-apply up to " + strconv.Itoa(c.cfg.ReplayBatch) + " pending dead letters (oldest first) through the fulfillment handler? An order applied already is not applied again."
		d.Fields["all"] = "1"
	} else {
		id, err := strconv.ParseInt(g.Query("id"), 10, 64)
		if err != nil || id <= 0 {
			c.errorPage(g, http.StatusBadRequest, "Dead letters", "deadletters", "Not a dead letter id.")
			return
		}
		d.Question = "Re-apply dead letter " + strconv.FormatInt(id, 10) + " through the fulfillment handler? An order applied already is not applied again."
		d.Fields["id"] = strconv.FormatInt(id, 10)
	}
	c.render(g, http.StatusOK, "confirm", c.view(g, "Confirm replay", "deadletters", view{Data: d}))
}

func (c *Console) deadLetterReplay(g *gin.Context) {
	if c.cfg.DeadLetters == nil {
		c.errorPage(g, http.StatusNotFound, "Dead letters", "deadletters", noDeadLetters)
		return
	}
	who := admin(g)
	// Replays write; give them the handler's own bound, not the page's.
	ctx := g.Request.Context()
	if g.PostForm("all") == "1" {
		results, err := c.cfg.DeadLetters.ReplayPending(ctx, c.cfg.ReplayBatch)
		if err != nil {
			c.logger.Warn("console: dead letter replay failed", "admin", who, "error", err)
			c.errorPage(g, http.StatusServiceUnavailable, "Dead letters", "deadletters", describe("fulfillment database", err))
			return
		}
		failed := 0
		for _, r := range results {
			c.logger.Info("console: dead letter replayed", "admin", who, "dead_letter", r.ID, "outcome", string(r.Outcome), "error", errString(r.Err))
			if r.Err != nil {
				failed++
			}
		}
		g.Redirect(http.StatusSeeOther, cookiePath+"/dead-letters?pending=1&done=dl_all&n="+strconv.Itoa(len(results)-failed)+"&failed="+strconv.Itoa(failed))
		return
	}
	id, err := strconv.ParseInt(g.PostForm("id"), 10, 64)
	if err != nil || id <= 0 {
		c.errorPage(g, http.StatusBadRequest, "Dead letters", "deadletters", "Not a dead letter id.")
		return
	}
	outcome, err := c.cfg.DeadLetters.Replay(ctx, id)
	c.logger.Info("console: dead letter replayed", "admin", who, "dead_letter", id, "outcome", string(outcome), "error", errString(err))
	switch {
	case errors.Is(err, order.ErrNotFound):
		c.errorPage(g, http.StatusNotFound, "Dead letters", "deadletters", "No dead letter "+strconv.FormatInt(id, 10)+".")
	case errors.Is(err, listener.ErrNotReplayable):
		c.errorPage(g, http.StatusConflict, "Dead letters", "deadletters", err.Error())
	case err != nil:
		c.errorPage(g, http.StatusServiceUnavailable, "Dead letters", "deadletters", describe("replay", err))
	default:
		g.Redirect(http.StatusSeeOther, cookiePath+"/dead-letters/"+strconv.FormatInt(id, 10)+"?done=dl_one&id="+strconv.FormatInt(id, 10)+"&outcome="+string(outcome))
	}
}
