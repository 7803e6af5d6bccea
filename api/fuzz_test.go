package api_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/order"
)

// FuzzDecodeOrder feeds arbitrary bodies through the decoder and the
// validator. It must never panic, and whatever it accepts must satisfy
// every rule, checked here independently of the validator's tags.
func FuzzDecodeOrder(f *testing.F) {
	seeds := []string{
		validBody,
		`{"customer_id":"c","currency":"JPY","items":[{"sku":"s","name":"n","quantity":1000,"unit_price":1000000000000}]}`,
		`{"customer_id":"c","currency":"EUR","items":[]}`,
		`{"customer_id":"c","currency":"eur","items":[{"sku":"s","name":"n","quantity":1,"unit_price":1}]}`,
		`{"customer_id":"","currency":"EUR","items":[{"sku":"s","name":"n","quantity":0,"unit_price":-1}]}`,
		`{"customer_id":"c\u0000","currency":"EUR","items":[{"sku":"s","name":"n","quantity":1,"unit_price":1}]}`,
		`{"customer_id":"c","currency":"EUR","items":[{"sku":"s","name":"n","quantity":1e3,"unit_price":1}]}`,
		`{"customer_id":"c","currency":"EUR","items":null}`,
		`{"customer_id":"c","currency":"EUR","items":[{"sku":"s","name":"n","quantity":1,"unit_price":9223372036854775807}]}`,
		`{}`, `null`, `[]`, `"x"`, ``, `{"a":1}`, `{"customer_id":"c"}{}`,
		`{"customer_id":"c","currency":"EUR","customer_id":"d","items":[{"sku":"s","name":"n","quantity":1,"unit_price":1}]}`,
		`{"customer_id":"c","currency":"EUR","items":[{"sku":"s","name":"n","quantity":1,"unit_price":1,"Quantity":9}]}`,
		`{"customer_id":"c","currency":"XXX","items":[{"sku":"s","name":"a‮gnp.exe","quantity":1,"unit_price":1}]}`,
		`{"customer_id":"​","currency":"VES","items":[{"sku":"ㅤ","name":"a b","quantity":1,"unit_price":1}]}`,
		`{"customer_id":"\ud800","currency":"EUR","items":[{"sku":"s","name":"\ufffd","quantity":1,"unit_price":1}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	v := order.NewValidator()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := api.DecodeNewOrder(bytes.NewReader(body), 64<<10)
		if err != nil {
			return
		}
		if v.Validate(req) != nil {
			return
		}
		if reason := invalid(req); reason != "" {
			t.Fatalf("accepted an invalid order (%s): %q", reason, body)
		}
	})
}

// invalid restates the rules of a valid order without the validator.
func invalid(o order.NewOrder) string {
	str := func(s string, max int) bool {
		if !utf8.ValidString(s) || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > max {
			return false
		}
		visible := false
		for _, r := range s {
			// No control, format (bidi, zero-width), separator, private
			// or unassigned code point.
			if unicode.IsControl(r) || r == utf8.RuneError || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) ||
				unicode.Is(unicode.Zp, r) || unicode.Is(unicode.Co, r) || !unicode.IsGraphic(r) {
				return false
			}
			if unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) {
				visible = true
			}
		}
		return visible
	}
	if !str(o.CustomerID, order.MaxCustomerIDLen) {
		return "customer_id"
	}
	if len(o.Currency) != 3 || strings.Trim(o.Currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return "currency"
	}
	switch o.Currency {
	case "XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XDR":
		return "currency of no money"
	}
	if len(o.Items) < 1 || len(o.Items) > order.MaxItems {
		return "item count"
	}
	for _, it := range o.Items {
		switch {
		case !str(it.SKU, order.MaxSKULen):
			return "sku"
		case !str(it.Name, order.MaxNameLen):
			return "name"
		case it.Quantity < 1 || it.Quantity > order.MaxQuantity:
			return "quantity"
		case it.UnitPrice < 1 || it.UnitPrice > order.MaxUnitPrice:
			return "unit_price"
		}
	}
	return ""
}

type nopOrders struct{}

func (nopOrders) Place(context.Context, order.PlaceRequest) (order.PlaceResult, error) {
	return order.PlaceResult{}, errors.New("not used")
}

func (nopOrders) Get(context.Context, uuid.UUID) (order.Located, error) {
	return order.Located{}, order.ErrNotFound
}
