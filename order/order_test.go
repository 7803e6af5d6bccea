package order

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestTransitions(t *testing.T) {
	all := []Status{StatusPendingPayment, StatusPaid, StatusClosed}
	allowed := map[[2]Status]bool{
		{StatusPendingPayment, StatusPaid}:   true,
		{StatusPendingPayment, StatusClosed}: true,
	}
	for _, from := range all {
		for _, to := range all {
			if got, want := from.CanTransitionTo(to), allowed[[2]Status{from, to}]; got != want {
				t.Errorf("%s → %s allowed = %v, want %v", from, to, got, want)
			}
		}
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	o := &Order{Status: StatusPendingPayment}
	if err := o.Pay(now); err != nil || o.Status != StatusPaid || o.PaidAt == nil || !o.PaidAt.Equal(now) {
		t.Fatalf("Pay: err=%v order=%+v", err, o)
	}
	if err := o.Close(now); !errors.Is(err, ErrInvalidTransition) || o.Status != StatusPaid {
		t.Fatalf("Close after Pay: err=%v status=%s, want ErrInvalidTransition and PAID kept", err, o.Status)
	}
	c := &Order{Status: StatusPendingPayment}
	if err := c.Close(now); err != nil || c.ClosedAt == nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Pay(now); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("Pay after Close: err=%v", err)
	}
}

func validOrder() NewOrder {
	return NewOrder{CustomerID: "c-1", Currency: "EUR", Items: []NewItem{{SKU: "SKU-1", Name: "Widget", Quantity: 2, UnitPrice: 1250}}}
}

func TestValidate(t *testing.T) {
	v := NewValidator()
	many := func(n int) []NewItem {
		items := make([]NewItem, n)
		for i := range items {
			items[i] = NewItem{SKU: "s", Name: "n", Quantity: 1, UnitPrice: 1}
		}
		return items
	}
	cases := []struct {
		name      string
		mutate    func(*NewOrder)
		wantField string // "" = valid
	}{
		{"valid", func(*NewOrder) {}, ""},
		{"100 items", func(o *NewOrder) { o.Items = many(100) }, ""},
		{"max quantity and price", func(o *NewOrder) { o.Items[0].Quantity, o.Items[0].UnitPrice = 1000, MaxUnitPrice }, ""},
		{"unicode name", func(o *NewOrder) { o.Items[0].Name = strings.Repeat("é", 200) }, ""},
		{"no items", func(o *NewOrder) { o.Items = nil }, "items"},
		{"empty items", func(o *NewOrder) { o.Items = []NewItem{} }, "items"},
		{"101 items", func(o *NewOrder) { o.Items = many(101) }, "items"},
		{"quantity 0", func(o *NewOrder) { o.Items[0].Quantity = 0 }, "items[0].quantity"},
		{"quantity 1001", func(o *NewOrder) { o.Items[0].Quantity = 1001 }, "items[0].quantity"},
		{"negative quantity", func(o *NewOrder) { o.Items[0].Quantity = -1 }, "items[0].quantity"},
		{"price 0", func(o *NewOrder) { o.Items[0].UnitPrice = 0 }, "items[0].unit_price"},
		{"negative price", func(o *NewOrder) { o.Items[0].UnitPrice = -5 }, "items[0].unit_price"},
		{"price too big", func(o *NewOrder) { o.Items[0].UnitPrice = MaxUnitPrice + 1 }, "items[0].unit_price"},
		{"unknown currency", func(o *NewOrder) { o.Currency = "XYZ" }, "currency"},
		{"lower-case currency", func(o *NewOrder) { o.Currency = "eur" }, "currency"},
		{"no currency", func(o *NewOrder) { o.Currency = "" }, "currency"},
		{"no customer", func(o *NewOrder) { o.CustomerID = "" }, "customer_id"},
		{"blank customer", func(o *NewOrder) { o.CustomerID = "   " }, "customer_id"},
		{"long customer", func(o *NewOrder) { o.CustomerID = strings.Repeat("c", 65) }, "customer_id"},
		{"long sku", func(o *NewOrder) { o.Items[0].SKU = strings.Repeat("s", 65) }, "items[0].sku"},
		{"long name", func(o *NewOrder) { o.Items[0].Name = strings.Repeat("n", 201) }, "items[0].name"},
		{"control char", func(o *NewOrder) { o.Items[0].Name = "a\x00b" }, "items[0].name"},
		{"invalid utf8", func(o *NewOrder) { o.CustomerID = "\xff\xfe" }, "customer_id"},
		// Issue 12, finding 6: invisible and bidirectional characters.
		{"right-to-left override", func(o *NewOrder) { o.Items[0].Name = "a\u202Egnp.exe" }, "items[0].name"},
		{"line separator", func(o *NewOrder) { o.CustomerID = "a\u2028b" }, "customer_id"},
		{"paragraph separator", func(o *NewOrder) { o.Items[0].Name = "a\u2029b" }, "items[0].name"},
		{"only a zero-width space", func(o *NewOrder) { o.Items[0].SKU = "\u200b" }, "items[0].sku"},
		{"zero-width joiner inside", func(o *NewOrder) { o.Items[0].SKU = "SKU\u200d1" }, "items[0].sku"},
		{"left-to-right isolate", func(o *NewOrder) { o.CustomerID = "\u2066c-1\u2069" }, "customer_id"},
		{"byte-order mark", func(o *NewOrder) { o.Items[0].Name = "\ufeffWidget" }, "items[0].name"},
		{"soft hyphen", func(o *NewOrder) { o.Items[0].Name = "Wid\u00adget" }, "items[0].name"},
		{"private use", func(o *NewOrder) { o.Items[0].Name = "\ue000" }, "items[0].name"},
		{"unassigned", func(o *NewOrder) { o.Items[0].Name = "\U0003ffff" }, "items[0].name"},
		{"only a Hangul filler", func(o *NewOrder) { o.CustomerID = "\u3164" }, "customer_id"},
		{"only a combining mark", func(o *NewOrder) { o.CustomerID = "\u0301" }, "customer_id"},
		{"only no-break spaces", func(o *NewOrder) { o.CustomerID = "\u00a0\u3000" }, "customer_id"},
		{"accented and CJK text", func(o *NewOrder) { o.Items[0].Name = "Cafe\u0301 \u6f22\u5b57 \U0001F600" }, ""},
		// Issue 12, finding 7: codes of no money.
		{"XXX", func(o *NewOrder) { o.Currency = "XXX" }, "currency"},
		{"test currency XTS", func(o *NewOrder) { o.Currency = "XTS" }, "currency"},
		{"gold XAU", func(o *NewOrder) { o.Currency = "XAU" }, "currency"},
		{"SDR", func(o *NewOrder) { o.Currency = "XDR" }, "currency"},
		{"fund code USN", func(o *NewOrder) { o.Currency = "USN" }, "currency"},
		{"retired HRK", func(o *NewOrder) { o.Currency = "HRK" }, "currency"},
		{"CFA franc XOF", func(o *NewOrder) { o.Currency = "XOF" }, ""},
		{"bolivar VES", func(o *NewOrder) { o.Currency = "VES" }, ""},
		{"yen", func(o *NewOrder) { o.Currency = "JPY" }, ""},
		{"second item bad", func(o *NewOrder) {
			o.Items = append(o.Items, NewItem{SKU: "x", Name: "y", Quantity: 5000, UnitPrice: 1})
		}, "items[1].quantity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := validOrder()
			tc.mutate(&o)
			err := v.Validate(o)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want *ValidationError on %s", err, tc.wantField)
			}
			for _, f := range verr.Fields {
				if f.Field == tc.wantField {
					return
				}
			}
			t.Fatalf("fields %+v do not name %s", verr.Fields, tc.wantField)
		})
	}
}

func TestHashIgnoresNothingThatMatters(t *testing.T) {
	a, b := validOrder(), validOrder()
	if a.Hash() != b.Hash() {
		t.Fatal("equal requests hash differently")
	}
	b.Items[0].Quantity++
	if a.Hash() == b.Hash() {
		t.Fatal("different requests hash the same")
	}
}

// A group is written again order by order only when MySQL said none of it
// committed; an answer that can end a COMMIT under way leaves the outcome
// unknown, and writing the group again would turn a stored order into a
// conflict.
func TestRefusedOnlyWhenNothingCommitted(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{translate(&mysql.MySQLError{Number: 1062, Message: "dup"}), true},
		{translate(&mysql.MySQLError{Number: 1213}), true},  // deadlock: an INSERT, before the COMMIT
		{translate(&mysql.MySQLError{Number: 1205}), true},  // lock wait timeout
		{translate(&mysql.MySQLError{Number: 1290}), true},  // read-only
		{translate(&mysql.MySQLError{Number: 1406}), true},  // data too long
		{translate(&mysql.MySQLError{Number: 1053}), false}, // server shutdown: maybe during the COMMIT
		{translate(&mysql.MySQLError{Number: 1927}), false}, // connection killed
		{translate(&mysql.MySQLError{Number: 1040}), false},
		{translate(mysql.ErrInvalidConn), false},
		{translate(context.DeadlineExceeded), false},
	} {
		if got := refused(c.err); got != c.want {
			t.Errorf("refused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
