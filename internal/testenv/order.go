package testenv

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
