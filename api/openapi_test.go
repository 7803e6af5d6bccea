package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/console"
	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// TestOpenAPIMatchesRouter checks that every route the router registers is
// documented in openapi.yaml and every documented operation exists.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPIDocument(), &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	admins := map[string]string{"admin-key-0123456789abcdef": "ops"}
	// The console's routes are the router's too: mounted, so that each
	// must be documented. Its stores are never called here.
	cons, err := console.New(console.Config{Orders: nopStores{}, OrderRows: nopStores{}, Spill: nopStores{}, Cache: nopStores{},
		Payments: nopStores{}, DeadLetters: nopDeadLetters{}, Admins: admins, SessionSecret: []byte(strings.Repeat("s", 32)), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(api.Config{
		Orders: nopOrders{}, Payments: nopPayments{}, Clients: map[string]string{apiKey: "demo"},
		Admins: admins, Spill: nopSpill{}, Console: cons,
		Registry: prometheus.NewRegistry(), Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	registered := map[string]bool{}
	for _, r := range h.(*gin.Engine).Routes() {
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	var missing, extra []string
	for route := range registered {
		if !documented[route] {
			missing = append(missing, route)
		}
	}
	for route := range documented {
		if !registered[route] {
			extra = append(extra, route)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("routes not documented: %v; documented but not routed: %v", missing, extra)
	}
	consoleRoutes := 0
	for route := range registered {
		if strings.Contains(route, " /console") {
			consoleRoutes++
		}
	}
	if consoleRoutes < 15 {
		t.Fatalf("only %d console routes registered: %v", consoleRoutes, registered)
	}
	if len(registered) < 6 {
		t.Fatalf("only %d routes registered: %v", len(registered), registered)
	}

	// Every stable problem code is documented, and nothing else.
	var codes struct {
		Components struct {
			Schemas struct {
				Problem struct {
					Properties struct {
						Code struct {
							Enum []string `yaml:"enum"`
						} `yaml:"code"`
					} `yaml:"properties"`
				} `yaml:"Problem"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(api.OpenAPIDocument(), &codes); err != nil {
		t.Fatal(err)
	}
	documentedCodes := codes.Components.Schemas.Problem.Properties.Code.Enum
	code := []string{api.CodeUnauthorized, api.CodeForbidden, api.CodeMalformedBody, api.CodeBodyTooLarge,
		api.CodeUnsupportedMediaType, api.CodeValidationFailed, api.CodeIdempotencyKeyMissing, api.CodeIdempotencyKeyInvalid,
		api.CodeIdempotencyKeyReused, api.CodeIdempotencyInProgress, api.CodeConflict, api.CodeInvalidOrderID,
		api.CodeOrderNotFound, api.CodeNotFound, api.CodeMethodNotAllowed, api.CodeUnavailable, api.CodeOverloaded,
		api.CodeInternal, api.CodeInvalidQuery, api.CodeRateLimited, api.CodeBadSignature, api.CodeAmountMismatch,
		api.CodeOrderClosed, api.CodeOrderAlreadyPaid, api.CodeProviderTxnReused}
	sort.Strings(documentedCodes)
	sort.Strings(code)
	if strings.Join(documentedCodes, " ") != strings.Join(code, " ") {
		t.Fatalf("problem codes documented %v, defined %v", documentedCodes, code)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "openapi: 3.1.0") {
		t.Fatalf("GET /openapi.yaml = %d", rec.Code)
	}
}

type nopSpill struct{}

func (nopSpill) Dead(context.Context) ([]fallback.DeadEntry, error)  { return nil, nil }
func (nopSpill) Pending(context.Context, int64) ([]uuid.UUID, error) { return nil, nil }

// nopStores stands in for every store of the console; the router test
// only lists routes.
type nopStores struct{}

func (nopStores) Get(context.Context, uuid.UUID) (order.Located, error) {
	return order.Located{}, order.ErrNotFound
}
func (nopStores) FindByKey(context.Context, string, string) (order.Located, error) {
	return order.Located{}, order.ErrNotFound
}
func (nopStores) List(context.Context, order.ListQuery) (order.Page, error) { return order.Page{}, nil }
func (nopStores) Milestones(context.Context, uuid.UUID) (order.Milestones, error) {
	return order.Milestones{}, nil
}
func (nopStores) CountByStatus(context.Context) (map[order.Status]int64, error) { return nil, nil }
func (nopStores) OldestUnpublishedPaid(context.Context) (time.Time, bool, error) {
	return time.Time{}, false, nil
}
func (nopStores) PendingPage(context.Context, string, int64) ([]fallback.Entry, string, error) {
	return nil, "", nil
}
func (nopStores) DeadPage(context.Context, string, int) ([]fallback.DeadEntry, []*order.Order, string, error) {
	return nil, nil, "", nil
}
func (nopStores) Depth(context.Context) (int64, int64, error)         { return 0, 0, nil }
func (nopStores) Replay(context.Context, uuid.UUID) error             { return nil }
func (nopStores) ReplayDead(context.Context, int) (int, int, error)   { return 0, 0, nil }
func (nopStores) Size(context.Context) (int64, error)                 { return 0, nil }
func (nopDeadLetters) Group() string                                  { return "fulfillment" }
func (nopDeadLetters) CountPending(context.Context) (int64, error)    { return 0, nil }
func (nopDeadLetters) CountApplied(context.Context) (int64, error)    { return 0, nil }
func (nopStores) CountRefundsRequired(context.Context) (int64, error) { return 0, nil }
func (nopDeadLetters) Page(context.Context, bool, int64, int) ([]listener.DeadLetter, int64, error) {
	return nil, 0, nil
}
func (nopDeadLetters) ReplayPending(context.Context, int) ([]listener.ReplayResult, error) {
	return nil, nil
}
func (nopDeadLetters) Progress(context.Context, uuid.UUID) (listener.Progress, error) {
	return listener.Progress{}, nil
}
func (nopStores) RefundsRequired(context.Context, int64, int) ([]payment.Refund, error) {
	return nil, nil
}
func (nopStores) ForOrder(context.Context, uuid.UUID) ([]payment.Payment, error) { return nil, nil }

type nopDeadLetters struct{}

func (nopDeadLetters) Get(context.Context, int64) (listener.DeadLetter, error) {
	return listener.DeadLetter{}, order.ErrNotFound
}
func (nopDeadLetters) Replay(context.Context, int64) (listener.ReplayOutcome, error) {
	return "", order.ErrNotFound
}
