package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// Problem codes of the payment webhook. Like the others, never rename one.
const (
	CodeBadSignature      = "bad_signature"
	CodeAmountMismatch    = "amount_mismatch"
	CodeOrderClosed       = "order_closed"
	CodeOrderAlreadyPaid  = "order_already_paid"
	CodeProviderTxnReused = "provider_txn_reused"
)

// HeaderReplayed is set to "true" on the answer to a notification whose
// provider transaction was recorded before: the status and body are the
// first delivery's.
const HeaderReplayed = "Idempotent-Replayed"

// Payments is what the API needs from the payment service.
type Payments interface {
	// Verify checks the X-Signature header against the raw body. Errors:
	// payment.ErrBadSignature.
	Verify(header string, body []byte) error
	// Notify records and applies a notification, or replays the answer of
	// a recorded one (Result.Replayed). Errors:
	// payment.ErrInvalidNotification, payment.ErrOrderNotFound,
	// payment.ErrAmountMismatch, payment.ErrOrderClosed and
	// payment.ErrAlreadyPaid (both payment.ErrRefundRequired),
	// payment.ErrTxnReused, order.ErrUnavailable. With ErrAmountMismatch,
	// ErrRefundRequired and ErrTxnReused the result describes the recorded
	// payment.
	Notify(ctx context.Context, n payment.Notification) (payment.Result, error)
}

// PaymentView is the answer to an applied or replayed notification.
type PaymentView struct {
	PaymentID   int64     `json:"payment_id"`
	OrderID     uuid.UUID `json:"order_id"`
	Status      string    `json:"status"`
	OrderStatus string    `json:"order_status"`
	Replayed    bool      `json:"replayed"`
}

// registerPayments adds the provider's webhook. It sits outside the /v1
// group: the provider authenticates with the HMAC signature, not an API
// key; the body limit still applies.
func registerPayments(r *gin.Engine, cfg Config) {
	if cfg.Payments == nil {
		return
	}
	h := &paymentHandlers{payments: cfg.Payments}
	r.POST("/v1/payments/notify", bodyLimit(cfg.MaxBodyBytes), h.notify)
}

type paymentHandlers struct{ payments Payments }

func (h *paymentHandlers) notify(c *gin.Context) {
	// The MAC covers the raw bytes, so read them before decoding anything.
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			abort(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Request body too large", "")
			return
		}
		abort(c, http.StatusBadRequest, CodeMalformedBody, "Malformed request body", "the body could not be read")
		return
	}
	// One signature header: with two, which one the MAC was checked
	// against would depend on who reads the request.
	sigs := c.Request.Header.Values(payment.HeaderSignature)
	err = fmt.Errorf("%w: %d %s headers", payment.ErrBadSignature, len(sigs), payment.HeaderSignature)
	if len(sigs) <= 1 {
		err = h.payments.Verify(c.GetHeader(payment.HeaderSignature), body)
	}
	if err != nil {
		_ = c.Error(err) // the reason goes to the access log, not to the caller
		abort(c, http.StatusUnauthorized, CodeBadSignature, "Bad signature",
			`send X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"> made with the webhook secret, with t close to now`)
		return
	}
	if !isJSON(c.GetHeader("Content-Type")) {
		abort(c, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Unsupported media type",
			"send the notification as application/json")
		return
	}
	n, err := payment.DecodeNotification(body)
	if err != nil {
		abort(c, http.StatusBadRequest, CodeMalformedBody, "Malformed payment notification", err.Error())
		return
	}
	res, err := h.payments.Notify(c.Request.Context(), n)
	if res.Replayed && !errors.Is(err, payment.ErrTxnReused) {
		c.Header(HeaderReplayed, "true")
	}
	if err != nil {
		abortPaymentError(c, n, res, err)
		return
	}
	c.JSON(http.StatusOK, PaymentView{PaymentID: res.Payment.ID, OrderID: res.Payment.OrderID,
		Status: string(res.Payment.Status), OrderStatus: string(res.OrderStatus), Replayed: res.Replayed})
}

// abortPaymentError is the translation table from payment errors to HTTP.
func abortPaymentError(c *gin.Context, n payment.Notification, res payment.Result, err error) {
	recorded := fmt.Sprintf("payment %d (provider transaction %s) is recorded as %s",
		res.Payment.ID, res.Payment.ProviderTxnID, res.Payment.Status)
	switch {
	case errors.Is(err, payment.ErrInvalidNotification):
		abort(c, http.StatusBadRequest, CodeMalformedBody, "Malformed payment notification", err.Error())
	case errors.Is(err, payment.ErrOrderNotFound):
		abort(c, http.StatusNotFound, CodeOrderNotFound, "Order not found",
			fmt.Sprintf("no order %s is recorded; nothing was stored, retry later", n.OrderID))
	case errors.Is(err, payment.ErrAmountMismatch):
		abort(c, http.StatusUnprocessableEntity, CodeAmountMismatch, "Amount does not match the order",
			err.Error()+"; "+recorded+" and the order is unchanged")
	case errors.Is(err, payment.ErrOrderClosed):
		abort(c, http.StatusConflict, CodeOrderClosed, "Order closed: refund required",
			"the order was closed before it was paid; "+recorded)
	case errors.Is(err, payment.ErrAlreadyPaid):
		abort(c, http.StatusConflict, CodeOrderAlreadyPaid, "Order already paid: refund required",
			"another provider transaction paid the order first; "+recorded)
	case errors.Is(err, payment.ErrTxnReused):
		abort(c, http.StatusConflict, CodeProviderTxnReused, "Provider transaction id reused",
			err.Error()+"; nothing was applied and the notification is recorded for review")
	case errors.Is(err, order.ErrUnavailable):
		_ = c.Error(err)
		c.Header("Retry-After", "5")
		abort(c, http.StatusServiceUnavailable, CodeUnavailable, "Service unavailable",
			"the payment could not be recorded; retry the same notification")
	default:
		_ = c.Error(err) // logged once by the access log
		abort(c, http.StatusInternalServerError, CodeInternal, "Internal error", "")
	}
}
