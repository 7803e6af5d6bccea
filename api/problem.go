package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/txorder/txorder/order"
)

// Problem is an RFC 9457 problem details body. Code is the stable,
// machine-readable identifier clients switch on; Title and Detail are for
// people and may change.
type Problem struct {
	Type      string             `json:"type"`
	Title     string             `json:"title"`
	Status    int                `json:"status"`
	Detail    string             `json:"detail,omitempty"`
	Instance  string             `json:"instance,omitempty"`
	Code      string             `json:"code"`
	RequestID string             `json:"request_id,omitempty"`
	Errors    []order.FieldError `json:"errors,omitempty"`
}

// Stable problem codes. Clients may rely on them; never rename one.
const (
	CodeUnauthorized          = "unauthorized"
	CodeForbidden             = "forbidden"
	CodeMalformedBody         = "malformed_body"
	CodeBodyTooLarge          = "body_too_large"
	CodeUnsupportedMediaType  = "unsupported_media_type"
	CodeValidationFailed      = "validation_failed"
	CodeIdempotencyKeyMissing = "idempotency_key_required"
	CodeIdempotencyKeyInvalid = "idempotency_key_invalid"
	CodeIdempotencyKeyReused  = "idempotency_key_reused"
	CodeIdempotencyInProgress = "idempotency_key_in_progress"
	CodeConflict              = "conflict"
	CodeInvalidOrderID        = "invalid_order_id"
	CodeOrderNotFound         = "order_not_found"
	CodeNotFound              = "not_found"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeUnavailable           = "service_unavailable"
	CodeOverloaded            = "overloaded"
	CodeInternal              = "internal_error"
	CodeInvalidQuery          = "invalid_query"
)

const problemContentType = "application/problem+json"

// problemTypeBase prefixes every problem type URI; the code completes it.
const problemTypeBase = "urn:txorder:problem:"

// abort writes a problem and stops the handler chain.
func abort(c *gin.Context, status int, code, title, detail string) {
	abortProblem(c, Problem{Status: status, Code: code, Title: title, Detail: detail})
}

func abortProblem(c *gin.Context, p Problem) {
	c.Set(ctxProblem, p.Code) // counted by observe
	p.Type = problemTypeBase + p.Code
	p.Instance = c.Request.URL.Path
	p.RequestID = c.GetString(ctxRequestID)
	if p.Status == http.StatusServiceUnavailable && c.Writer.Header().Get("Retry-After") == "" {
		c.Header("Retry-After", "1")
	}
	c.Header("Content-Type", problemContentType)
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(p.Status, p)
	// AbortWithStatusJSON sets application/json; keep the problem type.
	c.Writer.Header().Set("Content-Type", problemContentType)
}

// abortError is the single translation table from domain errors to HTTP.
func abortError(c *gin.Context, err error) {
	var verr *order.ValidationError
	switch {
	case errors.As(err, &verr):
		abortProblem(c, Problem{Status: http.StatusUnprocessableEntity, Code: CodeValidationFailed,
			Title: "The order is not valid", Detail: verr.Error(), Errors: verr.Fields})
	case errors.Is(err, order.ErrIdempotencyMismatch):
		abort(c, http.StatusConflict, CodeIdempotencyKeyReused, "Idempotency key reused",
			"this Idempotency-Key was used before with a different request body")
	case errors.Is(err, order.ErrInProgress):
		c.Header("Retry-After", "1")
		abort(c, http.StatusConflict, CodeIdempotencyInProgress, "Placement in progress",
			"a request with this Idempotency-Key is still being placed; retry shortly to get its result")
	case errors.Is(err, order.ErrConflict):
		abort(c, http.StatusConflict, CodeConflict, "Conflict", "the request conflicts with an existing order")
	case errors.Is(err, order.ErrNotFound):
		abort(c, http.StatusNotFound, CodeOrderNotFound, "Order not found", "")
	case errors.Is(err, order.ErrOutcomeUnknown):
		c.Header("Retry-After", "5")
		abort(c, http.StatusServiceUnavailable, CodeUnavailable, "Service unavailable",
			"the order may or may not have been recorded (a store timed out); retry with the same Idempotency-Key to learn which")
	case errors.Is(err, order.ErrRefused), errors.Is(err, order.ErrUnavailable):
		c.Header("Retry-After", "5")
		abort(c, http.StatusServiceUnavailable, CodeUnavailable, "Service unavailable",
			"the order could not be recorded durably; retry with the same Idempotency-Key")
	default:
		_ = c.Error(err) // logged once by the access log
		abort(c, http.StatusInternalServerError, CodeInternal, "Internal error", "")
	}
}
