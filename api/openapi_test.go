package api_test

import (
	"context"
	"github.com/google/uuid"
	"github.com/txorder/txorder/fallback"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/txorder/txorder/api"
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

	h, err := api.NewHandler(api.Config{
		Orders: nopOrders{}, Payments: nopPayments{}, Clients: map[string]string{apiKey: "demo"},
		Admins: map[string]string{"admin-key-0123456789abcdef": "ops"}, Spill: nopSpill{},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
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
