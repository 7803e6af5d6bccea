package api_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	_ "github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

const (
	apiKey   = "test-key-0123456789abcdef"
	otherKey = "other-key-0123456789abcdef"
)

// sharedMySQL starts on first use, so that fuzz workers (which never touch
// MySQL) do not start one each.
var sharedMySQL testenv.LazyMySQL

func shared(t testing.TB) *testenv.MySQLServer { return sharedMySQL.Get(t) }

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	code := m.Run()
	sharedMySQL.Stop()
	os.Exit(code)
}

type fixture struct {
	srv      *httptest.Server
	db       *sql.DB
	registry *prometheus.Registry
}

func newFixture(t *testing.T, checks ...api.Check) *fixture {
	t.Helper()
	db, err := sql.Open("mysql", shared(t).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := order.NewService(store, order.DirectPlacer{Store: store}, order.ServiceConfig{PaymentWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if checks == nil {
		checks = []api.Check{{Name: "mysql", Required: true, Probe: store.Ping}}
	}
	reg := prometheus.NewRegistry()
	h, err := api.NewHandler(api.Config{
		Orders:   svc,
		Clients:  map[string]string{apiKey: "demo", otherKey: "other"},
		Checks:   checks,
		Registry: reg,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, db: db, registry: reg}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) api.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p api.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != r.status || p.Code == "" || p.Title == "" || !strings.HasSuffix(p.Type, p.Code) || p.RequestID == "" {
		t.Fatalf("incomplete problem for status %d: %+v", r.status, p)
	}
	return p
}

func (f *fixture) do(t *testing.T, method, path string, body io.Reader, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (f *fixture) post(t *testing.T, key, body string) response {
	t.Helper()
	return f.do(t, http.MethodPost, "/v1/orders", strings.NewReader(body), map[string]string{
		"Authorization": "Bearer " + apiKey, "Content-Type": "application/json", "Idempotency-Key": key,
	})
}

const validBody = `{"customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","name":"Widget","quantity":2,"unit_price":1250}]}`

func TestPlaceGetReplay(t *testing.T) {
	f := newFixture(t)
	res := f.post(t, "key-1", validBody)
	if res.status != http.StatusCreated {
		t.Fatalf("POST = %d %s, want 201", res.status, res.body)
	}
	var created api.OrderView
	if err := json.Unmarshal(res.body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Status != "PENDING_PAYMENT" || created.Total != 2500 || res.header.Get("Location") != "/v1/orders/"+created.ID.String() {
		t.Fatalf("created = %+v, Location %q", created, res.header.Get("Location"))
	}
	got := f.do(t, http.MethodGet, "/v1/orders/"+created.ID.String(), nil, map[string]string{"Authorization": "Bearer " + apiKey})
	var read api.OrderView
	if got.status != http.StatusOK || json.Unmarshal(got.body, &read) != nil || read.ID != created.ID || read.Total != 2500 {
		t.Fatalf("GET = %d %s", got.status, got.body)
	}
	// Same key and same body, whitespace and field order aside → the original, 200.
	replay := f.post(t, "key-1", `{ "items":[{"name":"Widget","sku":"SKU-1","unit_price":1250,"quantity":2}], "currency":"EUR", "customer_id":"c-1" }`)
	var again api.OrderView
	if replay.status != http.StatusOK || json.Unmarshal(replay.body, &again) != nil || again.ID != created.ID {
		t.Fatalf("replay = %d %s, want 200 with order %s", replay.status, replay.body, created.ID)
	}
	conflict := f.post(t, "key-1", strings.Replace(validBody, `"quantity":2`, `"quantity":3`, 1))
	if conflict.status != http.StatusConflict || conflict.problem(t).Code != api.CodeIdempotencyKeyReused {
		t.Fatalf("conflicting replay = %d %s, want 409 %s", conflict.status, conflict.body, api.CodeIdempotencyKeyReused)
	}
	var n int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("orders stored = %d (%v), want 1", n, err)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	for name, header := range map[string]string{
		"missing":      "",
		"wrong key":    "Bearer not-the-key-0123456789",
		"wrong scheme": "Basic " + apiKey,
		"no token":     "Bearer ",
		"key prefix":   "Bearer " + apiKey[:10],
	} {
		t.Run(name, func(t *testing.T) {
			h := map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k"}
			if header != "" {
				h["Authorization"] = header
			}
			for _, req := range []struct{ method, path, body string }{
				{http.MethodPost, "/v1/orders", validBody},
				{http.MethodGet, "/v1/orders/0190a0c8-0000-7000-8000-000000000000", ""},
			} {
				res := f.do(t, req.method, req.path, strings.NewReader(req.body), h)
				if res.status != http.StatusUnauthorized || res.problem(t).Code != api.CodeUnauthorized ||
					!strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("%s %s = %d %s, want 401 unauthorized", req.method, req.path, res.status, res.body)
				}
			}
		})
	}
	var n int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("unauthorized requests stored %d orders (%v)", n, err)
	}
	// The second configured key works too, as its own client.
	res := f.do(t, http.MethodPost, "/v1/orders", strings.NewReader(validBody), map[string]string{
		"Authorization": "bearer " + otherKey, "Content-Type": "application/json", "Idempotency-Key": "k",
	})
	if res.status != http.StatusCreated {
		t.Fatalf("other client = %d %s", res.status, res.body)
	}
}

func TestRejectsBadRequests(t *testing.T) {
	f := newFixture(t)
	items := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `{"sku":"s","name":"n","quantity":1,"unit_price":1}`
		}
		return `{"customer_id":"c","currency":"EUR","items":[` + strings.Join(parts, ",") + `]}`
	}
	withItem := func(item string) string {
		return `{"customer_id":"c","currency":"EUR","items":[` + item + `]}`
	}
	cases := []struct {
		name       string
		key        string
		body       string
		header     map[string]string
		wantStatus int
		wantCode   string
		wantField  string
	}{
		{"no idempotency key", "", validBody, nil, 400, api.CodeIdempotencyKeyMissing, ""},
		{"key with space", "a b", validBody, nil, 400, api.CodeIdempotencyKeyInvalid, ""},
		{"key too long", strings.Repeat("k", 256), validBody, nil, 400, api.CodeIdempotencyKeyInvalid, ""},
		{"text content type", "k", validBody, map[string]string{"Content-Type": "text/plain"}, 415, api.CodeUnsupportedMediaType, ""},
		{"not json", "k", `{"customer_id":`, nil, 400, api.CodeMalformedBody, ""},
		{"empty body", "k", ``, nil, 400, api.CodeMalformedBody, ""},
		{"array body", "k", `[]`, nil, 400, api.CodeMalformedBody, ""},
		{"unknown field", "k", strings.Replace(validBody, `"currency"`, `"discount":5,"currency"`, 1), nil, 400, api.CodeMalformedBody, ""},
		{"unknown item field", "k", withItem(`{"sku":"s","name":"n","quantity":1,"unit_price":1,"color":"red"}`), nil, 400, api.CodeMalformedBody, ""},
		{"trailing data", "k", validBody + `{}`, nil, 400, api.CodeMalformedBody, ""},
		{"string quantity", "k", withItem(`{"sku":"s","name":"n","quantity":"1","unit_price":1}`), nil, 400, api.CodeMalformedBody, ""},
		{"fractional price", "k", withItem(`{"sku":"s","name":"n","quantity":1,"unit_price":1.5}`), nil, 400, api.CodeMalformedBody, ""},
		{"no items", "k", `{"customer_id":"c","currency":"EUR","items":[]}`, nil, 422, api.CodeValidationFailed, "items"},
		{"101 items", "k", items(101), nil, 422, api.CodeValidationFailed, "items"},
		{"quantity 0", "k", withItem(`{"sku":"s","name":"n","quantity":0,"unit_price":1}`), nil, 422, api.CodeValidationFailed, "items[0].quantity"},
		{"quantity 1001", "k", withItem(`{"sku":"s","name":"n","quantity":1001,"unit_price":1}`), nil, 422, api.CodeValidationFailed, "items[0].quantity"},
		{"price 0", "k", withItem(`{"sku":"s","name":"n","quantity":1,"unit_price":0}`), nil, 422, api.CodeValidationFailed, "items[0].unit_price"},
		{"negative price", "k", withItem(`{"sku":"s","name":"n","quantity":1,"unit_price":-1}`), nil, 422, api.CodeValidationFailed, "items[0].unit_price"},
		{"unknown currency", "k", strings.Replace(validBody, "EUR", "ABC", 1), nil, 422, api.CodeValidationFailed, "currency"},
		{"missing customer", "k", strings.Replace(validBody, `"customer_id":"c-1",`, "", 1), nil, 422, api.CodeValidationFailed, "customer_id"},
		{"long customer", "k", strings.Replace(validBody, `"c-1"`, `"`+strings.Repeat("c", 65)+`"`, 1), nil, 422, api.CodeValidationFailed, "customer_id"},
		{"long sku", "k", withItem(`{"sku":"` + strings.Repeat("s", 65) + `","name":"n","quantity":1,"unit_price":1}`), nil, 422, api.CodeValidationFailed, "items[0].sku"},
		{"long name", "k", withItem(`{"sku":"s","name":"` + strings.Repeat("n", 201) + `","quantity":1,"unit_price":1}`), nil, 422, api.CodeValidationFailed, "items[0].name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Authorization": "Bearer " + apiKey, "Content-Type": "application/json"}
			if tc.key != "" {
				h["Idempotency-Key"] = tc.key
			}
			for k, v := range tc.header {
				h[k] = v
			}
			res := f.do(t, http.MethodPost, "/v1/orders", strings.NewReader(tc.body), h)
			if res.status != tc.wantStatus {
				t.Fatalf("status = %d %s, want %d", res.status, res.body, tc.wantStatus)
			}
			p := res.problem(t)
			if p.Code != tc.wantCode {
				t.Fatalf("code = %q, want %q", p.Code, tc.wantCode)
			}
			if tc.wantField != "" {
				found := false
				for _, fe := range p.Errors {
					found = found || fe.Field == tc.wantField
				}
				if !found {
					t.Fatalf("errors %+v do not name %s", p.Errors, tc.wantField)
				}
			}
		})
	}
	var n int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("bad requests stored %d orders (%v), want 0", n, err)
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t)
	big := `{"customer_id":"c","currency":"EUR","items":[],"pad":"` + strings.Repeat("x", 64<<10) + `"}`
	h := map[string]string{"Authorization": "Bearer " + apiKey, "Content-Type": "application/json", "Idempotency-Key": "big"}
	res := f.do(t, http.MethodPost, "/v1/orders", strings.NewReader(big), h)
	if res.status != http.StatusRequestEntityTooLarge || res.problem(t).Code != api.CodeBodyTooLarge {
		t.Fatalf("declared big body = %d %s, want 413", res.status, res.body)
	}
	// Chunked: no Content-Length, so the limit is enforced while reading.
	res = f.do(t, http.MethodPost, "/v1/orders", io.MultiReader(strings.NewReader(big)), h)
	if res.status != http.StatusRequestEntityTooLarge || res.problem(t).Code != api.CodeBodyTooLarge {
		t.Fatalf("chunked big body = %d %s, want 413", res.status, res.body)
	}
}

func TestGetErrors(t *testing.T) {
	f := newFixture(t)
	auth := map[string]string{"Authorization": "Bearer " + apiKey}
	if res := f.do(t, http.MethodGet, "/v1/orders/not-a-uuid", nil, auth); res.status != 400 || res.problem(t).Code != api.CodeInvalidOrderID {
		t.Fatalf("bad id = %d %s", res.status, res.body)
	}
	if res := f.do(t, http.MethodGet, "/v1/orders/0190a0c8-0000-7000-8000-000000000000", nil, auth); res.status != 404 || res.problem(t).Code != api.CodeOrderNotFound {
		t.Fatalf("unknown id = %d %s", res.status, res.body)
	}
	// Issue 12, finding 10: one spelling per order. uuid.Parse takes all of
	// these for the canonical id.
	const id = "0190a0c8-0000-7000-8000-0000000000ab"
	for _, form := range []string{strings.ToUpper(id), "urn:uuid:" + id, "%7B" + id + "%7D", strings.ReplaceAll(id, "-", "")} {
		if res := f.do(t, http.MethodGet, "/v1/orders/"+form, nil, auth); res.status != 400 || res.problem(t).Code != api.CodeInvalidOrderID {
			t.Fatalf("GET /v1/orders/%s = %d %s, want 400 invalid_order_id", form, res.status, res.body)
		}
	}
	if res := f.do(t, http.MethodGet, "/v2/nothing", nil, auth); res.status != 404 || res.problem(t).Code != api.CodeNotFound {
		t.Fatalf("unknown route = %d %s", res.status, res.body)
	}
	if res := f.do(t, http.MethodDelete, "/v1/orders", nil, auth); res.status != 405 || res.problem(t).Code != api.CodeMethodNotAllowed {
		t.Fatalf("wrong method = %d %s", res.status, res.body)
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	res := f.do(t, http.MethodGet, "/healthz", nil, map[string]string{api.HeaderRequestID: "trace-abc"})
	if res.header.Get(api.HeaderRequestID) != "trace-abc" {
		t.Fatalf("request id not echoed: %q", res.header.Get(api.HeaderRequestID))
	}
	res = f.do(t, http.MethodGet, "/healthz", nil, map[string]string{api.HeaderRequestID: "bad id\twith tab"})
	if got := res.header.Get(api.HeaderRequestID); got == "" || strings.Contains(got, " ") {
		t.Fatalf("unsafe request id not replaced: %q", got)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	down := errors.New("connection refused")
	f := newFixture(t,
		api.Check{Name: "mysql", Required: true, Probe: func(context.Context) error { return nil }},
		api.Check{Name: "redis", Probe: func(context.Context) error { return down }},
		api.Check{Name: "rocketmq", Probe: func(context.Context) error { return nil }},
	)
	if res := f.do(t, http.MethodGet, "/healthz", nil, nil); res.status != 200 {
		t.Fatalf("healthz = %d", res.status)
	}
	var ready struct {
		Status string
		Checks map[string]struct{ Status, Error string }
	}
	res := f.do(t, http.MethodGet, "/readyz", nil, nil)
	if err := json.Unmarshal(res.body, &ready); err != nil || res.status != 200 {
		t.Fatalf("readyz = %d %s", res.status, res.body)
	}
	if ready.Checks["mysql"].Status != "up" || ready.Checks["redis"].Status != "down" ||
		ready.Checks["redis"].Error != "" || ready.Checks["rocketmq"].Status != "up" {
		t.Fatalf("readyz checks = %+v, want up/down without details", ready.Checks)
	}
	g := newFixture(t, api.Check{Name: "mysql", Required: true, Probe: func(context.Context) error { return down }})
	if res := g.do(t, http.MethodGet, "/readyz", nil, nil); res.status != 503 || !strings.Contains(string(res.body), `"not_ready"`) {
		t.Fatalf("readyz with mysql down = %d %s, want 503", res.status, res.body)
	}
	f.post(t, "m1", validBody)
	res = f.do(t, http.MethodGet, "/metrics", nil, nil)
	if !strings.Contains(string(res.body), `txorder_http_requests_total{code="201",method="POST",route="/v1/orders"} 1`) {
		t.Fatalf("metrics lack the POST counter:\n%s", res.body)
	}
}

func TestConcurrentPlacements(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := f.post(t, fmt.Sprintf("c-%d", i), validBody)
			if res.status != http.StatusCreated {
				t.Errorf("placement %d = %d %s", i, res.status, res.body)
			}
		}()
	}
	wg.Wait()
	var n int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 16 {
		t.Fatalf("orders = %d (%v), want 16", n, err)
	}
}
