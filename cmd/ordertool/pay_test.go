package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

const (
	paySecret   = "whsec-test-0123456789abcdef0123456789"
	payAPIKey   = "pay-test-key-0123456789"
	payOtherKey = "pay-other-key-0123456789"
	payAdminKey = "pay-admin-key-0123456789"
)

type payServer struct {
	url    string
	db     *sql.DB
	orders *order.Service
}

// newPayServer serves the real API, with the real payment service, on a
// fresh database of the shared MariaDB.
func newPayServer(t *testing.T) *payServer {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	db, err := sql.Open("mysql", sharedMySQL.NewDatabase(t))
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
	orders, err := order.NewService(store, order.DirectPlacer{Store: store}, order.ServiceConfig{PaymentWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	payments, err := payment.NewService(store, logger, payment.Config{WebhookSecret: paySecret})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(api.Config{Orders: orders, Payments: payments,
		Clients: map[string]string{payAPIKey: "demo", payOtherKey: "x"}, Admins: map[string]string{payAdminKey: "ops"},
		Registry: prometheus.NewRegistry(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &payServer{url: srv.URL, db: db, orders: orders}
}

func (s *payServer) place(t *testing.T) uuid.UUID {
	t.Helper()
	res, err := s.orders.Place(context.Background(), order.PlaceRequest{ClientID: "demo", IdempotencyKey: uuid.NewString(),
		Order: order.NewOrder{CustomerID: "c-1", Currency: "JPY",
			Items: []order.NewItem{{SKU: "S", Name: "Sake", Quantity: 3, UnitPrice: 1200}}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Order.ID
}

func (s *payServer) status(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var st string
	if err := s.db.QueryRow(`SELECT status FROM orders WHERE id = ?`, id.String()).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *payServer) payments(t *testing.T, id uuid.UUID) []string {
	t.Helper()
	rows, err := s.db.Query(`SELECT CONCAT(provider_txn_id, ' ', amount, ' ', currency, ' ', status) FROM payments
		WHERE order_id = ? ORDER BY id`, id.String())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestPay(t *testing.T) {
	s := newPayServer(t)
	env := []string{"TXORDER_PAYMENT__WEBHOOK_SECRET=" + paySecret, envAPIKey + "=" + payAPIKey}
	id := s.place(t)

	// Amount and currency read from the order (3 × 1200 JPY).
	code, out, errOut := runTool(t, env, "pay", id.String(), "--config", "", "--url", s.url, "--txn-id", "tx-demo")
	if code != 0 {
		t.Fatalf("pay = %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	var v api.PaymentView
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Status != "APPLIED" || v.OrderStatus != "PAID" || v.Replayed {
		t.Fatalf("printed %q (%v), want the APPLIED answer", out, err)
	}
	if got := s.payments(t, id); len(got) != 1 || got[0] != "tx-demo 3600 JPY APPLIED" || s.status(t, id) != "PAID" {
		t.Fatalf("payments %v, order %s; want one APPLIED 3600 JPY and PAID", got, s.status(t, id))
	}

	// The same provider transaction again is a replay: exit 0, nothing new.
	code, out, _ = runTool(t, env, "pay", "--config", "", "--url", s.url, "--txn-id", "tx-demo", id.String())
	if code != 0 || !strings.Contains(out, `"replayed":true`) {
		t.Fatalf("replay = %d %q", code, out)
	}

	// Another transaction for the paid order: 409, exit 1 naming the code.
	code, out, errOut = runTool(t, env, "pay", id.String(), "--config", "", "--url", s.url)
	if code != 1 || !strings.Contains(errOut, api.CodeOrderAlreadyPaid) || !strings.Contains(out, api.CodeOrderAlreadyPaid) {
		t.Fatalf("double payment = %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if got := s.payments(t, id); len(got) != 2 || !strings.HasSuffix(got[1], "3600 JPY REFUND_REQUIRED") {
		t.Fatalf("payments = %v", got)
	}

	// --amount alone: the currency still comes from the order.
	other := s.place(t)
	code, _, errOut = runTool(t, env, "pay", other.String(), "--amount", "100", "--config", "", "--url", s.url, "--txn-id", "tx-short")
	if code != 1 || !strings.Contains(errOut, api.CodeAmountMismatch) {
		t.Fatalf("short payment = %d %q", code, errOut)
	}
	if got := s.payments(t, other); len(got) != 1 || got[0] != "tx-short 100 JPY AMOUNT_MISMATCH" || s.status(t, other) != "PENDING_PAYMENT" {
		t.Fatalf("payments %v, order %s", got, s.status(t, other))
	}

	// Both given: the order is not read, so an unknown order reaches the
	// webhook (404), and a wrong API key does not matter.
	unknown := uuid.Must(uuid.NewV7())
	code, _, errOut = runTool(t, env, "pay", unknown.String(), "--amount", "5", "--currency", "EUR",
		"--api-key", "wrong-key-0123456789", "--config", "", "--url", s.url)
	if code != 1 || !strings.Contains(errOut, api.CodeOrderNotFound) {
		t.Fatalf("unknown order = %d %q", code, errOut)
	}
}

func TestPayErrors(t *testing.T) {
	s := newPayServer(t)
	id := s.place(t).String()
	withSecret := []string{"TXORDER_PAYMENT__WEBHOOK_SECRET=" + paySecret}
	cases := []struct {
		name     string
		environ  []string
		args     []string
		wantCode int
		wantText string
	}{
		{"no order id", withSecret, []string{"pay", "--config", ""}, 2, "exactly one order id"},
		{"two order ids", withSecret, []string{"pay", id, id, "--config", ""}, 2, "exactly one order id"},
		{"bad order id", withSecret, []string{"pay", "order-1", "--config", ""}, 2, "not a UUID"},
		{"bad flag", withSecret, []string{"pay", id, "--amout", "1"}, 2, "flag provided but not defined"},
		{"help", nil, []string{"pay", "--help"}, 0, "-txn-id string"},
		{"no secret", []string{"TXORDER_PAYMENT__WEBHOOK_SECRET="}, []string{"pay", id, "--config", "", "--url", s.url}, 1,
			"TXORDER_PAYMENT__WEBHOOK_SECRET"},
		{"wrong secret", []string{"TXORDER_PAYMENT__WEBHOOK_SECRET=another-secret-0123456789abcdef012"},
			[]string{"pay", id, "--config", "", "--url", s.url, "--api-key", payAPIKey}, 1, api.CodeBadSignature},
		{"wrong API key", withSecret, []string{"pay", id, "--config", "", "--url", s.url, "--api-key", "nope-0123456789abcdef"}, 1,
			api.CodeUnauthorized},
		{"API key from auth.api_keys", append([]string{"TXORDER_AUTH__API_KEYS=demo:" + payAPIKey + ",x:" + payOtherKey}, withSecret...),
			[]string{"pay", id, "--config", "", "--url", s.url, "--amount", "1"}, 1, api.CodeAmountMismatch},
		// Another client's key cannot read the order (404); an admin key,
		// preferred when configured, reads every order.
		{"another client's key", append([]string{"TXORDER_AUTH__API_KEYS=x:" + payOtherKey}, withSecret...),
			[]string{"pay", id, "--config", "", "--url", s.url, "--amount", "1"}, 1, api.CodeOrderNotFound},
		{"admin key from auth.admin_keys", append([]string{"TXORDER_AUTH__API_KEYS=x:" + payOtherKey, "TXORDER_AUTH__ADMIN_KEYS=ops:" + payAdminKey}, withSecret...),
			[]string{"pay", id, "--config", "", "--url", s.url, "--amount", "1"}, 1, api.CodeAmountMismatch},
		{"orderd not running", withSecret, []string{"pay", id, "--config", "", "--url", "http://127.0.0.1:1", "--amount", "1", "--currency", "EUR"}, 1,
			"connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runTool(t, tc.environ, tc.args...)
			if code != tc.wantCode || !strings.Contains(out+errOut, tc.wantText) {
				t.Fatalf("ordertool %v = %d\nstdout %s\nstderr %s\nwant %d mentioning %q", tc.args, code, out, errOut, tc.wantCode, tc.wantText)
			}
		})
	}
	if st := s.status(t, uuid.MustParse(id)); st != "PENDING_PAYMENT" {
		t.Fatalf("order %s after the failures, want PENDING_PAYMENT", st)
	}
}
