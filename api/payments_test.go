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
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

const webhookSecret = "whsec-test-0123456789abcdef0123456789"

// nopPayments lets a handler register the webhook route without a database.
type nopPayments struct{}

func (nopPayments) Verify(string, []byte) error { return payment.ErrBadSignature }

func (nopPayments) Notify(context.Context, payment.Notification) (payment.Result, error) {
	return payment.Result{}, errors.New("not used")
}

type payFixture struct {
	srv    *httptest.Server
	db     *sql.DB
	orders *order.Service
}

// newPayFixture serves the API with the real payment service on dsn
// (migrated here), with a store timeout of storeTimeout.
func newPayFixture(t *testing.T, dsn string, storeTimeout time.Duration) *payFixture {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	store, err := order.NewStore(db, order.StoreConfig{Timeout: storeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	orders, err := order.NewService(store, order.DirectPlacer{Store: store}, order.ServiceConfig{PaymentWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	payments, err := payment.NewService(store, logger, payment.Config{WebhookSecret: webhookSecret, Tolerance: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(api.Config{
		Orders: orders, Payments: payments, Clients: map[string]string{apiKey: "demo"},
		Registry: prometheus.NewRegistry(), Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &payFixture{srv: srv, db: db, orders: orders}
}

// place stores a PENDING_PAYMENT order of 2 × 1250 = 2500 EUR.
func (f *payFixture) place(t *testing.T) *order.Order {
	t.Helper()
	res, err := f.orders.Place(context.Background(), order.PlaceRequest{ClientID: "demo", IdempotencyKey: uuid.NewString(),
		Order: order.NewOrder{CustomerID: "c-1", Currency: "EUR",
			Items: []order.NewItem{{SKU: "SKU-1", Name: "Widget", Quantity: 2, UnitPrice: 1250}}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Order
}

func notifyBody(id uuid.UUID, txn string, amount int64, currency string) string {
	return fmt.Sprintf(`{"provider_txn_id":%q,"order_id":%q,"amount":%d,"currency":%q}`, txn, id, amount, currency)
}

type payResponse struct {
	status int
	header http.Header
	body   []byte
}

// send posts body with the given X-Signature header ("" = none), no API
// key, as application/json.
func (f *payFixture) send(t *testing.T, body, signature string, headers ...string) payResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/payments/notify", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set(payment.HeaderSignature, signature)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
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
	return payResponse{status: res.StatusCode, header: res.Header, body: b}
}

// notify posts body signed now.
func (f *payFixture) notify(t *testing.T, body string) payResponse {
	t.Helper()
	return f.send(t, body, payment.Sign(webhookSecret, time.Now(), []byte(body)))
}

func (r payResponse) view(t *testing.T) api.PaymentView {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s, want 200", r.status, r.body)
	}
	var v api.PaymentView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

// expectProblem checks the status and code of a problem answer.
func (r payResponse) expectProblem(t *testing.T, status int, code string) api.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d %s, want %d %s", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p api.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem %q: %v", r.body, err)
	}
	if p.Status != status || p.Code != code || p.Title == "" || p.Type != "urn:txorder:problem:"+code || p.RequestID == "" {
		t.Fatalf("problem = %+v, want status %d code %s", p, status, code)
	}
	return p
}

type storedPayment struct {
	txn, orderID, status string
	amount               int64
	currency             string
}

func (f *payFixture) payments(t *testing.T) []storedPayment {
	t.Helper()
	rows, err := f.db.Query(`SELECT provider_txn_id, order_id, status, amount, currency FROM payments ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedPayment
	for rows.Next() {
		var p storedPayment
		if err := rows.Scan(&p.txn, &p.orderID, &p.status, &p.amount, &p.currency); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type orderRow struct {
	status           string
	paidAt, closedAt sql.NullTime
	updatedAt        time.Time
}

func (f *payFixture) order(t *testing.T, id uuid.UUID) orderRow {
	t.Helper()
	var o orderRow
	if err := f.db.QueryRow(`SELECT status, paid_at, closed_at, updated_at FROM orders WHERE id = ?`, id.String()).
		Scan(&o.status, &o.paidAt, &o.closedAt, &o.updatedAt); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestPaymentHappyPath(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	o := f.place(t)
	// No Authorization header: the provider authenticates by signature.
	v := f.notify(t, notifyBody(o.ID, "tx-1", 2500, "EUR")).view(t)
	if v.PaymentID == 0 || v.OrderID != o.ID || v.Status != "APPLIED" || v.OrderStatus != "PAID" || v.Replayed {
		t.Fatalf("answer = %+v, want a new APPLIED payment and a PAID order", v)
	}
	row := f.order(t, o.ID)
	if row.status != "PAID" || !row.paidAt.Valid || row.closedAt.Valid {
		t.Fatalf("order = %+v, want PAID with paid_at", row)
	}
	if got := f.payments(t); len(got) != 1 || got[0] != (storedPayment{"tx-1", o.ID.String(), "APPLIED", 2500, "EUR"}) {
		t.Fatalf("payments = %+v", got)
	}
	// The order API shows it paid.
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/orders/"+o.ID.String(), nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var shown api.OrderView
	if err := json.NewDecoder(res.Body).Decode(&shown); err != nil || shown.Status != "PAID" || shown.PaidAt == nil {
		t.Fatalf("GET order = %d %+v (%v), want PAID with paid_at", res.StatusCode, shown, err)
	}
}

func TestPaymentReplay(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	o := f.place(t)
	first := f.notify(t, notifyBody(o.ID, "tx-1", 2500, "EUR")).view(t)
	before := f.order(t, o.ID)
	again := f.notify(t, notifyBody(o.ID, "tx-1", 2500, "EUR"))
	if v := again.view(t); !v.Replayed || v.PaymentID != first.PaymentID || v.Status != "APPLIED" || v.OrderStatus != "PAID" {
		t.Fatalf("replay = %+v, want payment %d replayed", v, first.PaymentID)
	}
	if again.header.Get(api.HeaderReplayed) != "true" {
		t.Fatalf("replay without %s: true", api.HeaderReplayed)
	}
	// A different body under the same transaction is not a replay: the
	// stored payment stays, the new one is refused (TestPaymentTxnReused).
	f.notify(t, notifyBody(o.ID, "tx-1", 1, "USD")).expectProblem(t, http.StatusConflict, api.CodeProviderTxnReused)
	if got := f.payments(t); len(got) != 1 || got[0].amount != 2500 {
		t.Fatalf("payments = %+v, want the one first recorded", got)
	}
	if after := f.order(t, o.ID); after != before {
		t.Fatalf("order changed by a replay: %+v → %+v", before, after)
	}
}

// TestPaymentRejected: every answer that is not 200, and what it leaves
// behind.
func TestPaymentRejected(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	now := time.Now()
	signedAt := func(at time.Time, body string) string { return payment.Sign(webhookSecret, at, []byte(body)) }
	type check func(t *testing.T, o *order.Order)
	nothingChanged := func(t *testing.T, o *order.Order) {
		t.Helper()
		if row := f.order(t, o.ID); row.status != "PENDING_PAYMENT" || row.paidAt.Valid {
			t.Fatalf("order = %+v, want PENDING_PAYMENT untouched", row)
		}
		for _, p := range f.payments(t) {
			if p.orderID == o.ID.String() {
				t.Fatalf("payment %+v recorded, want none", p)
			}
		}
	}
	recorded := func(status string, amount int64, currency string) check {
		return func(t *testing.T, o *order.Order) {
			t.Helper()
			if row := f.order(t, o.ID); row.status != "PENDING_PAYMENT" || row.paidAt.Valid {
				t.Fatalf("order = %+v, want PENDING_PAYMENT untouched", row)
			}
			var found []storedPayment
			for _, p := range f.payments(t) {
				if p.orderID == o.ID.String() {
					found = append(found, p)
				}
			}
			if len(found) != 1 || found[0].status != status || found[0].amount != amount || found[0].currency != currency {
				t.Fatalf("payments of the order = %+v, want one %s of %d %s", found, status, amount, currency)
			}
		}
	}
	cases := []struct {
		name   string
		send   func(t *testing.T, o *order.Order) payResponse
		status int
		code   string
		after  check
	}{
		{"missing signature", func(t *testing.T, o *order.Order) payResponse {
			return f.send(t, notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR"), "")
		}, 401, api.CodeBadSignature, nothingChanged},
		{"wrong secret", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR")
			return f.send(t, body, payment.Sign("not-the-secret-0123456789abcdef01234", now, []byte(body)))
		}, 401, api.CodeBadSignature, nothingChanged},
		{"body changed after signing", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR")
			return f.send(t, strings.Replace(body, "2500", "2501", 1), signedAt(now, body))
		}, 401, api.CodeBadSignature, nothingChanged},
		{"malformed signature", func(t *testing.T, o *order.Order) payResponse {
			return f.send(t, notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR"), "sha256=deadbeef")
		}, 401, api.CodeBadSignature, nothingChanged},
		{"stale timestamp", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR")
			return f.send(t, body, signedAt(now.Add(-6*time.Minute), body))
		}, 401, api.CodeBadSignature, nothingChanged},
		{"future timestamp", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR")
			return f.send(t, body, signedAt(now.Add(6*time.Minute), body))
		}, 401, api.CodeBadSignature, nothingChanged},
		{"API key instead of a signature", func(t *testing.T, o *order.Order) payResponse {
			return f.send(t, notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR"), "", "Authorization", "Bearer "+apiKey)
		}, 401, api.CodeBadSignature, nothingChanged},
		{"unknown field", func(t *testing.T, o *order.Order) payResponse {
			body := strings.Replace(notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR"), "{", `{"note":"x",`, 1)
			return f.send(t, body, signedAt(now, body))
		}, 400, api.CodeMalformedBody, nothingChanged},
		{"zero amount", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 0, "EUR")
			return f.send(t, body, signedAt(now, body))
		}, 400, api.CodeMalformedBody, nothingChanged},
		{"not JSON", func(t *testing.T, o *order.Order) payResponse {
			body := "amount=2500"
			return f.send(t, body, signedAt(now, body))
		}, 400, api.CodeMalformedBody, nothingChanged},
		{"form content type", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR")
			return f.send(t, body, signedAt(now, body), "Content-Type", "application/x-www-form-urlencoded")
		}, 415, api.CodeUnsupportedMediaType, nothingChanged},
		{"body over 64 KiB", func(t *testing.T, o *order.Order) payResponse {
			body := notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "EUR") + strings.Repeat(" ", 64<<10)
			return f.send(t, body, signedAt(now, body))
		}, 413, api.CodeBodyTooLarge, nothingChanged},
		{"wrong amount", func(t *testing.T, o *order.Order) payResponse {
			return f.notify(t, notifyBody(o.ID, "tx-"+o.ID.String(), 2499, "EUR"))
		}, 422, api.CodeAmountMismatch, recorded("AMOUNT_MISMATCH", 2499, "EUR")},
		{"wrong currency", func(t *testing.T, o *order.Order) payResponse {
			return f.notify(t, notifyBody(o.ID, "tx-"+o.ID.String(), 2500, "USD"))
		}, 422, api.CodeAmountMismatch, recorded("AMOUNT_MISMATCH", 2500, "USD")},
		{"unknown order", func(t *testing.T, o *order.Order) payResponse {
			return f.notify(t, notifyBody(uuid.Must(uuid.NewV7()), "tx-"+o.ID.String(), 2500, "EUR"))
		}, 404, api.CodeOrderNotFound, nothingChanged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := f.place(t)
			tc.send(t, o).expectProblem(t, tc.status, tc.code)
			tc.after(t, o)
		})
	}
	if got := f.payments(t); len(got) != 2 {
		t.Fatalf("payments = %+v, want only the 2 mismatches recorded", got)
	}
}

func TestPaymentClosedOrder(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	o := f.place(t)
	if _, err := f.db.Exec(`UPDATE orders SET status = 'CLOSED', closed_at = UTC_TIMESTAMP(6) WHERE id = ?`, o.ID.String()); err != nil {
		t.Fatal(err)
	}
	p := f.notify(t, notifyBody(o.ID, "tx-late", 2500, "EUR")).expectProblem(t, http.StatusConflict, api.CodeOrderClosed)
	if !strings.Contains(p.Detail, "REFUND_REQUIRED") {
		t.Fatalf("detail %q does not say the payment is to be refunded", p.Detail)
	}
	if got := f.payments(t); len(got) != 1 || got[0].status != "REFUND_REQUIRED" || got[0].txn != "tx-late" {
		t.Fatalf("payments = %+v, want tx-late REFUND_REQUIRED", got)
	}
	if row := f.order(t, o.ID); row.status != "CLOSED" || row.paidAt.Valid {
		t.Fatalf("order = %+v, want CLOSED", row)
	}
	// The provider retrying the same notification gets the same answer.
	again := f.notify(t, notifyBody(o.ID, "tx-late", 2500, "EUR"))
	if q := again.expectProblem(t, http.StatusConflict, api.CodeOrderClosed); q.Detail != p.Detail {
		t.Fatalf("replay detail %q, want the first %q", q.Detail, p.Detail)
	}
	if again.header.Get(api.HeaderReplayed) != "true" {
		t.Fatalf("replay without %s: true", api.HeaderReplayed)
	}
}

func TestPaymentDoublePayment(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	o := f.place(t)
	f.notify(t, notifyBody(o.ID, "tx-1", 2500, "EUR")).view(t)
	before := f.order(t, o.ID)
	p := f.notify(t, notifyBody(o.ID, "tx-2", 2500, "EUR")).expectProblem(t, http.StatusConflict, api.CodeOrderAlreadyPaid)
	if !strings.Contains(p.Detail, "REFUND_REQUIRED") {
		t.Fatalf("detail %q does not say the payment is to be refunded", p.Detail)
	}
	got := f.payments(t)
	if len(got) != 2 || got[0].status != "APPLIED" || got[1].status != "REFUND_REQUIRED" || got[1].txn != "tx-2" {
		t.Fatalf("payments = %+v, want tx-1 APPLIED and tx-2 REFUND_REQUIRED", got)
	}
	if after := f.order(t, o.ID); after != before {
		t.Fatalf("order changed by the second payment: %+v → %+v", before, after)
	}
}

func TestPaymentRouteNeedsPayments(t *testing.T) {
	h, err := api.NewHandler(api.Config{
		Orders: nopOrders{}, Clients: map[string]string{apiKey: "demo"},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/payments/notify", strings.NewReader("{}")))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("without Payments POST /v1/payments/notify = %d, want 404", rec.Code)
	}
	h, err = api.NewHandler(api.Config{
		Orders: nopOrders{}, Payments: nopPayments{}, Clients: map[string]string{apiKey: "demo"},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/payments/notify", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/payments/notify = %d, want 405", rec.Code)
	}
}

// TestPaymentMySQLKilled: with mariadbd killed the webhook answers 503
// within the store timeout, records nothing, and works again once MySQL
// is back.
func TestPaymentMySQLKilled(t *testing.T) {
	my := testenv.MySQL(t)
	const timeout = time.Second
	f := newPayFixture(t, my.DSN(), timeout)
	o := f.place(t)
	if err := my.Kill(); err != nil {
		t.Fatal(err)
	}
	body := notifyBody(o.ID, "tx-during", 2500, "EUR")
	start := time.Now()
	res := f.notify(t, body)
	elapsed := time.Since(start)
	res.expectProblem(t, http.StatusServiceUnavailable, api.CodeUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if elapsed > timeout+time.Second {
		t.Fatalf("503 after %s, want within the %s timeout", elapsed, timeout)
	}
	t.Logf("503 after %s with MySQL killed", elapsed)

	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	// The provider retries the same notification: it applies now.
	v := f.notify(t, body).view(t)
	if v.Replayed || v.Status != "APPLIED" || v.OrderStatus != "PAID" {
		t.Fatalf("after restart = %+v, want applied", v)
	}
	if got := f.payments(t); len(got) != 1 {
		t.Fatalf("payments = %+v, want exactly one", got)
	}
}
