package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/strictjson"
	"github.com/txorder/txorder/order"
)

// HeaderIdempotencyKey names the header that makes POST /v1/orders safe to retry.
const HeaderIdempotencyKey = "Idempotency-Key"

// maxIdempotencyKeyLen matches the column size in MySQL.
const maxIdempotencyKeyLen = 255

// Orders is what the API needs from the order service.
type Orders interface {
	// Place errors: *order.ValidationError, order.ErrIdempotencyMismatch,
	// order.ErrRefused, order.ErrUnavailable.
	Place(ctx context.Context, req order.PlaceRequest) (order.PlaceResult, error)
	// Get errors: order.ErrNotFound, order.ErrUnavailable.
	Get(ctx context.Context, id uuid.UUID) (order.Located, error)
}

// OrderView is the JSON an order is shown as. Status is the row status, or
// ACCEPTED / QUEUED while the order waits in Redis for MySQL or RocketMQ.
type OrderView struct {
	ID              uuid.UUID    `json:"id"`
	Status          string       `json:"status"`
	CustomerID      string       `json:"customer_id"`
	Currency        string       `json:"currency"`
	Total           int64        `json:"total"`
	Items           []order.Item `json:"items"`
	PaymentDeadline time.Time    `json:"payment_deadline"`
	CreatedAt       time.Time    `json:"created_at"`
	PaidAt          *time.Time   `json:"paid_at,omitempty"`
	ClosedAt        *time.Time   `json:"closed_at,omitempty"`
}

func viewOf(o *order.Order, status string) OrderView {
	return OrderView{ID: o.ID, Status: status, CustomerID: o.CustomerID, Currency: o.Currency,
		Total: o.Total, Items: o.Items, PaymentDeadline: o.PaymentDeadline, CreatedAt: o.CreatedAt,
		PaidAt: o.PaidAt, ClosedAt: o.ClosedAt}
}

// placementStatus maps where an order was recorded to the HTTP status and
// the status shown to the client.
// A replay is always 200 (the original order, nothing new written), its
// status showing where the order is now.
func placementStatus(res order.PlaceResult) (int, string) {
	code, shown := http.StatusCreated, string(res.Order.Status)
	switch res.Outcome {
	case order.OutcomeCached:
		code, shown = http.StatusAccepted, "ACCEPTED"
	case order.OutcomeQueued:
		code, shown = http.StatusAccepted, "QUEUED"
	}
	if res.Replayed {
		code = http.StatusOK
	}
	return code, shown
}

type orderHandlers struct {
	orders       Orders
	maxBodyBytes int64
}

func (h *orderHandlers) create(c *gin.Context) {
	if c.GetBool(ctxAdmin) {
		abort(c, http.StatusForbidden, CodeForbidden, "Admin keys cannot place orders",
			"an order belongs to the API client that places it: use that client's key")
		return
	}
	if len(c.Request.Header.Values(HeaderIdempotencyKey)) > 1 {
		abort(c, http.StatusBadRequest, CodeIdempotencyKeyInvalid, "Invalid Idempotency-Key",
			"send exactly one Idempotency-Key header")
		return
	}
	key := c.GetHeader(HeaderIdempotencyKey)
	if key == "" {
		abort(c, http.StatusBadRequest, CodeIdempotencyKeyMissing, "Idempotency-Key required",
			"POST /v1/orders needs an Idempotency-Key header so that a retry cannot create a second order")
		return
	}
	if !validToken(key, maxIdempotencyKeyLen) {
		abort(c, http.StatusBadRequest, CodeIdempotencyKeyInvalid, "Invalid Idempotency-Key",
			fmt.Sprintf("the key must be 1 to %d printable ASCII characters without spaces", maxIdempotencyKeyLen))
		return
	}
	if !isJSON(c.GetHeader("Content-Type")) {
		abort(c, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Unsupported media type",
			"send the order as application/json")
		return
	}
	req, err := DecodeNewOrder(c.Request.Body, h.maxBodyBytes)
	if err != nil {
		abortDecodeError(c, err)
		return
	}
	res, err := h.orders.Place(c.Request.Context(), order.PlaceRequest{
		ClientID: c.GetString(ctxClient), IdempotencyKey: key, Order: req,
	})
	if err != nil {
		abortError(c, err)
		return
	}
	status, shown := placementStatus(res)
	c.Header("Location", "/v1/orders/"+res.Order.ID.String())
	c.JSON(status, viewOf(res.Order, shown))
}

func (h *orderHandlers) get(c *gin.Context) {
	id, err := order.ParseID(c.Param("id"))
	if err != nil {
		abort(c, http.StatusBadRequest, CodeInvalidOrderID, "Invalid order id", err.Error())
		return
	}
	loc, err := h.orders.Get(c.Request.Context(), id)
	if err == nil && !c.GetBool(ctxAdmin) && !loc.Order.OwnedBy(c.GetString(ctxClient)) {
		// Another client's order is answered exactly like a missing one,
		// so that ids cannot be probed.
		err = order.ErrNotFound
	}
	if err != nil {
		abortError(c, err)
		return
	}
	shown := string(loc.Order.Status)
	switch loc.Where {
	case order.OutcomeCached:
		shown = "ACCEPTED" // in Redis, waiting for MySQL to come back
	case order.OutcomeQueued:
		shown = "QUEUED" // in Redis, waiting for RocketMQ to come back
	}
	c.JSON(http.StatusOK, viewOf(loc.Order, shown))
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// errBodyTooLarge is returned by DecodeNewOrder when the body exceeds the limit.
var errBodyTooLarge = errors.New("request body too large")

// DecodeNewOrder reads one JSON order request of at most max bytes. It
// rejects unknown fields, wrong types, trailing data and keys given twice
// (naming the key); it does not apply the business rules (the
// order.Validator does).
func DecodeNewOrder(r io.Reader, max int64) (order.NewOrder, error) {
	var req order.NewOrder
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, errBodyTooLarge
		}
		return req, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > max {
		return req, errBodyTooLarge
	}
	if err := strictjson.Decode(body, &req); err != nil {
		return order.NewOrder{}, fmt.Errorf("decode order: %w", err)
	}
	return req, nil
}

func abortDecodeError(c *gin.Context, err error) {
	if errors.Is(err, errBodyTooLarge) {
		abort(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Request body too large", "")
		return
	}
	abort(c, http.StatusBadRequest, CodeMalformedBody, "Malformed request body", err.Error())
}
