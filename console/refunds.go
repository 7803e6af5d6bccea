package console

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/txorder/txorder/payment"
)

type refundsData struct {
	List    []payment.Refund
	NextURL string
}

// refundsPage lists payments recorded REFUND_REQUIRED, newest first.
func (c *Console) refundsPage(g *gin.Context) {
	before, _ := strconv.ParseInt(g.Query("before"), 10, 64)
	ctx, cancel := c.readCtx(g)
	defer cancel()
	list, err := c.cfg.Payments.RefundsRequired(ctx, max(before, 0), c.cfg.PageSize+1)
	if err != nil {
		c.render(g, http.StatusServiceUnavailable, "refunds", c.view(g, "Refunds required", "refunds", view{
			Data: refundsData{}, Problem: describe("mysql", err)}))
		return
	}
	data := refundsData{List: list}
	if len(list) > c.cfg.PageSize {
		data.List = list[:c.cfg.PageSize]
		data.NextURL = cookiePath + "/refunds?before=" + strconv.FormatInt(data.List[c.cfg.PageSize-1].ID, 10)
	}
	c.render(g, http.StatusOK, "refunds", c.view(g, "Refunds required", "refunds", view{Data: data}))
}
