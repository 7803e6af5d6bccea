package payment

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestDecodeNotification(t *testing.T) {
	const id = "0190b7a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b"
	valid := `{"provider_txn_id":"tx-1","order_id":"` + id + `","amount":2500,"currency":"EUR"}`
	cases := []struct {
		name string
		body string
		ok   bool
	}{
		{"valid", valid, true},
		{"field order and whitespace", ` { "currency":"JPY", "amount":1, "order_id":"` + id + `", "provider_txn_id":"` + strings.Repeat("x", 128) + `" } `, true},
		{"upper-case uuid", strings.Replace(valid, id, strings.ToUpper(id), 1), true},

		{"unknown field", strings.Replace(valid, `"amount"`, `"extra":1,"amount"`, 1), false},
		{"missing txn", `{"order_id":"` + id + `","amount":2500,"currency":"EUR"}`, false},
		{"missing order", `{"provider_txn_id":"tx-1","amount":2500,"currency":"EUR"}`, false},
		{"missing amount", `{"provider_txn_id":"tx-1","order_id":"` + id + `","currency":"EUR"}`, false},
		{"missing currency", `{"provider_txn_id":"tx-1","order_id":"` + id + `","amount":2500}`, false},
		{"null amount", strings.Replace(valid, `2500`, `null`, 1), false},
		{"empty txn", strings.Replace(valid, `"tx-1"`, `""`, 1), false},
		{"txn 129 chars", strings.Replace(valid, `"tx-1"`, `"`+strings.Repeat("x", 129)+`"`, 1), false},
		{"txn with space", strings.Replace(valid, `"tx-1"`, `"tx 1"`, 1), false},
		{"txn non-ASCII", strings.Replace(valid, `"tx-1"`, `"tx-é"`, 1), false},
		{"txn control char", strings.Replace(valid, `"tx-1"`, `"tx\u0000"`, 1), false},
		{"order not uuid", strings.Replace(valid, id, "order-1", 1), false},
		{"order uuid without hyphens", strings.Replace(valid, id, strings.ReplaceAll(id, "-", ""), 1), false},
		{"order urn", strings.Replace(valid, `"`+id+`"`, `"urn:uuid:`+id+`"`, 1), false},
		{"nil uuid", strings.Replace(valid, id, uuid.Nil.String(), 1), false},
		{"zero amount", strings.Replace(valid, `2500`, `0`, 1), false},
		{"negative amount", strings.Replace(valid, `2500`, `-1`, 1), false},
		{"fractional amount", strings.Replace(valid, `2500`, `25.00`, 1), false},
		{"amount as string", strings.Replace(valid, `2500`, `"2500"`, 1), false},
		{"amount overflow", strings.Replace(valid, `2500`, `9223372036854775808`, 1), false},
		{"lower-case currency", strings.Replace(valid, `"EUR"`, `"eur"`, 1), false},
		{"unknown currency", strings.Replace(valid, `"EUR"`, `"ABC"`, 1), false},
		{"long currency", strings.Replace(valid, `"EUR"`, `"EURO"`, 1), false},
		{"trailing object", valid + `{}`, false},
		{"trailing garbage", valid + `x`, false},
		{"array", `[` + valid + `]`, false},
		{"null", `null`, false},
		{"empty", ``, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := DecodeNotification([]byte(tc.body))
			if tc.ok {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if n.OrderID.String() != id || n.Amount <= 0 {
					t.Fatalf("decoded %+v", n)
				}
				return
			}
			if !errors.Is(err, ErrInvalidNotification) {
				t.Fatalf("got %+v, %v; want ErrInvalidNotification", n, err)
			}
		})
	}
}
