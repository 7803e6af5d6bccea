package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type body struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
	Items   []item `json:"items"`
	Meta    struct {
		Note string `json:"note"`
	} `json:"meta"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, body string
		dup        string // the path a duplicate-key error must name; "" = no duplicate
		ok         bool
	}{
		{"valid", `{"order_id":"a","amount":1,"items":[{"sku":"s","qty":1},{"sku":"t","qty":2}],"meta":{"note":"n"}}`, "", true},
		{"same key in sibling objects", `{"items":[{"sku":"s"},{"sku":"t"}]}`, "", true},
		{"same key at two depths", `{"meta":{"note":"x"},"items":[{"sku":"note"}]}`, "", true},
		{"key equal to a value", `{"order_id":"amount","amount":1}`, "", true},

		{"top-level duplicate", `{"order_id":"a","amount":1,"order_id":"b"}`, "order_id", false},
		{"case-variant duplicate", `{"order_id":"a","ORDER_ID":"b"}`, "ORDER_ID", false},
		{"kelvin sign duplicate", `{"sku":"a","s` + "\u212a" + `u":"b"}`, "", false},
		{"nested duplicate", `{"items":[{"sku":"s","qty":1},{"sku":"t","sku":"u"}]}`, "items[1].sku", false},
		{"duplicate in nested object", `{"meta":{"note":"a","note":"b"}}`, "meta.note", false},
		{"duplicate after nested values", `{"items":[[1,{"a":1}],{"b":2}],"x":{"y":[]},"items":[]}`, "items", false},
		{"escaped duplicate", `{"amount":1,"\u0061mount":2}`, "amount", false},

		{"field in another case", `{"order_id":"a","Amount":1}`, "", false},
		{"nested field in another case", `{"items":[{"sku":"s"},{"SKU":"t"}]}`, "", false},
		{"unknown field", `{"order_id":"a","extra":1}`, "", false},
		{"trailing data", `{"order_id":"a"} {}`, "", false},
		{"syntax error", `{"order_id":`, "", false},
		{"empty", ``, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b body
			err := Decode([]byte(tc.body), &b)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("got %v, want decoded", err)
			case !tc.ok && err == nil:
				t.Fatalf("decoded %+v, want an error", b)
			case tc.dup != "" && (!errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), `"`+tc.dup+`"`)):
				t.Fatalf("got %v, want a duplicate key error naming %q", err, tc.dup)
			case strings.Contains(tc.name, "another case") && (!errors.Is(err, ErrKeyCase) || !strings.Contains(err.Error(), `"items[1].SKU"`) && !strings.Contains(err.Error(), `"Amount"`)):
				t.Fatalf("got %v, want a key case error naming the key", err)
			}
		})
	}
}

// FuzzCheckKeys: checkKeys never panics, and whenever it passes a body
// that encoding/json accepts into a map, the map has as many keys per
// object as the body has names (no key was silently overwritten).
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":2,"c":3}]}}`, `[{"a":1},{"a":1}]`, `{"A":1,"a":2}`, `{`, `[]`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkKeys(b, nil) != nil {
			return
		}
		var v map[string]json.RawMessage
		if json.Unmarshal(b, &v) != nil {
			return
		}
		seen := map[string]bool{}
		for k := range v {
			if seen[fold(k)] {
				t.Fatalf("keys %q fold together in %q", k, b)
			}
			seen[fold(k)] = true
		}
	})
}
