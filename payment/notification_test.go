package payment

import (
	"bytes"
	"encoding/json"
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
		{"order in braces", strings.Replace(valid, `"`+id+`"`, `"{`+id+`}"`, 1), false},
		{"upper-case uuid", strings.Replace(valid, id, strings.ToUpper(id), 1), false},
		{"duplicate order_id", strings.Replace(valid, `"amount"`, `"order_id":"`+uuid.Nil.String()+`","amount"`, 1), false},
		{"case-variant duplicate amount", strings.Replace(valid, `}`, `,"AMOUNT":1}`, 1), false},
		{"currency XXX", strings.Replace(valid, `"EUR"`, `"XXX"`, 1), false},
		{"currency gold", strings.Replace(valid, `"EUR"`, `"XAU"`, 1), false},
		{"currency VES", strings.Replace(valid, `"EUR"`, `"VES"`, 1), true},
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

// FuzzDecodeNotification feeds arbitrary bodies to the webhook decoder. It
// must never panic, and whatever it accepts must be one unambiguous
// notification: exactly the four fields, each once, in their canonical
// form, and valid by rules restated here without Validate.
func FuzzDecodeNotification(f *testing.F) {
	const id = "0190b7a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b"
	valid := `{"provider_txn_id":"tx-1","order_id":"` + id + `","amount":2500,"currency":"EUR"}`
	for _, s := range []string{
		valid,
		` { "currency":"JPY", "amount":1, "order_id":"` + id + `", "provider_txn_id":"X-TxnCase-Ab" } `,
		strings.Replace(valid, `"amount"`, `"order_id":"`+id+`","amount"`, 1),
		strings.Replace(valid, `}`, `,"AMOUNT":1}`, 1),
		strings.Replace(valid, id, strings.ToUpper(id), 1),
		strings.Replace(valid, `"`+id+`"`, `"{`+id+`}"`, 1),
		strings.Replace(valid, `"EUR"`, `"XXX"`, 1),
		strings.Replace(valid, `2500`, `2.5e3`, 1),
		strings.Replace(valid, `"tx-1"`, `"tx\u00e9"`, 1),
		valid + `{}`, `{}`, `null`, `[]`, ``, `{"provider_txn_id":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := DecodeNotification(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidNotification) {
				t.Fatalf("error %v does not wrap ErrInvalidNotification", err)
			}
			return
		}
		// Exactly four top-level names, as written: no duplicate, no
		// case variant (encoding/json would have merged either).
		dec := json.NewDecoder(bytes.NewReader(body))
		names := map[string]int{}
		depth := 0
		expectName := false
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch tok {
			case json.Delim('{'), json.Delim('['):
				depth++
				expectName = tok == json.Delim('{') && depth == 1
				continue
			case json.Delim('}'), json.Delim(']'):
				depth--
				continue
			}
			if depth == 1 && expectName {
				names[tok.(string)]++
			}
			expectName = depth == 1 && !expectName
		}
		if len(names) != 4 || names["provider_txn_id"] != 1 || names["order_id"] != 1 || names["amount"] != 1 || names["currency"] != 1 {
			t.Fatalf("accepted %q with names %v", body, names)
		}
		if n.OrderID.String() == uuid.Nil.String() || !strings.Contains(string(body), `"`+n.OrderID.String()+`"`) {
			t.Fatalf("accepted %q: order id %s not in canonical form in the body", body, n.OrderID)
		}
		if n.Amount <= 0 || len(n.ProviderTxnID) == 0 || len(n.ProviderTxnID) > MaxProviderTxnIDLen {
			t.Fatalf("accepted %q as %+v", body, n)
		}
		for _, c := range []byte(n.ProviderTxnID) {
			if c <= ' ' || c > '~' {
				t.Fatalf("accepted provider_txn_id %q", n.ProviderTxnID)
			}
		}
		if len(n.Currency) != 3 || strings.Trim(n.Currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Fatalf("accepted currency %q", n.Currency)
		}
		switch n.Currency {
		case "XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XDR":
			t.Fatalf("accepted the non-money code %q", n.Currency)
		}
	})
}
