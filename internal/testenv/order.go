package testenv

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/payment"
)

// PlaceOrder places one order of 100 EUR minor units (one item) through
// baseURL's API (e.g. "http://127.0.0.1:8080") with apiKey and Idempotency-Key key, fails the
// test unless it is answered 201, and returns the order's id.
func PlaceOrder(t testing.TB, baseURL, apiKey, key string) string {
	t.Helper()
	body := `{"customer_id":"c-1","currency":"EUR","items":[{"sku":"SKU-1","name":"Widget","quantity":1,"unit_price":100}]}`
	req, err := http.NewRequest(http.MethodPost, baseURL+"/v1/orders", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("place %s = %d (%v)", key, res.StatusCode, err)
	}
	return o.ID
}

// PaymentRequest returns the payment provider's notification that order
// orderID (placed by PlaceOrder: 100 EUR minor units) was paid under
// provider transaction txn, signed with secret, for baseURL's webhook.
func PaymentRequest(t testing.TB, baseURL, secret, txn, orderID string) *http.Request {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"provider_txn_id": txn, "order_id": orderID, "amount": 100, "currency": "EUR"})
	req, err := http.NewRequest(http.MethodPost, baseURL+"/v1/payments/notify", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(payment.HeaderSignature, payment.Sign(secret, time.Now(), body))
	return req
}
