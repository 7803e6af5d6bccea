package order

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
)

// Bounds of a valid order request. Prices and quantities are bounded so the
// total cannot overflow int64.
const (
	MaxItems         = 100
	MaxQuantity      = 1000
	MaxUnitPrice     = 1_000_000_000_000 // minor units
	MaxCustomerIDLen = 64
	MaxSKULen        = 64
	MaxNameLen       = 200
)

// NewOrder is what a client asks for. It is validated with Validate before
// anything is written.
type NewOrder struct {
	CustomerID string    `json:"customer_id" validate:"required,max=64,printable"`
	Currency   string    `json:"currency" validate:"required,currency"`
	Items      []NewItem `json:"items" validate:"required,min=1,max=100,dive"`
}

// NewItem is one requested line.
type NewItem struct {
	SKU       string `json:"sku" validate:"required,max=64,printable"`
	Name      string `json:"name" validate:"required,max=200,printable"`
	Quantity  int    `json:"quantity" validate:"min=1,max=1000"`
	UnitPrice int64  `json:"unit_price" validate:"min=1,max=1000000000000"`
}

// FieldError names one field that failed validation and the rule it broke.
type FieldError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
	Param string `json:"param,omitempty"`
}

// ValidationError lists every field that failed validation.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Rule
		if f.Param != "" {
			parts[i] += "=" + f.Param
		}
	}
	return "invalid order: " + strings.Join(parts, ", ")
}

// Validator checks NewOrder values. It is safe for concurrent use; build one
// with NewValidator and share it.
type Validator struct{ v *validator.Validate }

// NewValidator returns a Validator with the order rules registered.
func NewValidator() *Validator {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		return name
	})
	_ = v.RegisterValidation("printable", func(fl validator.FieldLevel) bool { return Printable(fl.Field().String()) })
	_ = v.RegisterValidation("currency", func(fl validator.FieldLevel) bool { return ValidCurrency(fl.Field().String()) })
	return &Validator{v: v}
}

// Printable reports whether s is text a person can read as it is stored:
// valid UTF-8 of graphic characters only (letters, marks, numbers,
// punctuation, symbols and spaces) with at least one visible one (not a
// space, a mark or a blank letter). That
// refuses control characters, format characters (Cf: zero-width spaces and
// joiners, the bidirectional overrides and isolates such as U+202E that
// make "a\u202Egnp.exe" display as "aexe.png", the byte-order mark), line
// and paragraph separators (U+2028, U+2029), private-use and unassigned
// code points, the replacement character U+FFFD (broken input), and text that is only spaces or blank letters such as the
// Hangul filler. Keeps logs, CSV exports, terminals and the people reading
// them sane.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	visible := false
	for _, r := range s {
		// U+FFFD is what a decoder puts in place of bytes that were not
		// UTF-8 or of a lone surrogate escape: text that arrived broken,
		// and different broken ids would read as the same one.
		if !unicode.IsGraphic(r) || r == utf8.RuneError {
			return false
		}
		// Spaces, combining marks (a variation selector, the grapheme
		// joiner) and blank letters show nothing on their own.
		if !unicode.IsSpace(r) && !unicode.IsMark(r) && !blank[r] {
			visible = true
		}
	}
	return visible
}

// blank are letters and symbols that render as nothing.
var blank = map[rune]bool{
	'\u115F': true, '\u1160': true, // Hangul choseong and jungseong fillers
	'\u3164': true, '\uFFA0': true, // Hangul filler, halfwidth Hangul filler
	'\u2800': true, // Braille pattern blank
}

// nonMoney are ISO-4217 codes that are not money a customer can pay an
// order in: X codes of no currency, testing, precious metals, special
// drawing rights and supranational units of account, and the fund codes
// (list A "Fund" entries, accounting units beside a currency).
var nonMoney = map[string]bool{
	"XXX": true, "XTS": true, // no currency, testing
	"XAU": true, "XAG": true, "XPT": true, "XPD": true, // gold, silver, platinum, palladium
	"XDR": true, "XSU": true, "XUA": true, // SDR, Sucre, ADB unit of account
	"XBA": true, "XBB": true, "XBC": true, "XBD": true, // European bond market units
	"BOV": true, "CHE": true, "CHW": true, "CLF": true, "COU": true, // funds
	"MXV": true, "USN": true, "UYI": true, "UYW": true,
}

// iso4217 checks codes against go-playground/validator's ISO-4217 list A,
// which its maintainers keep current (VES, MRU, SLE, ZWG, XCG in; HRK,
// ANG out, as of v10.30); golang.org/x/text/currency carries CLDR 32
// (2017) and would refuse VES and accept HRK. The validator is built once
// and only read.
var iso4217 = sync.OnceValue(func() *validator.Validate { return validator.New() })

// ValidCurrency reports whether code is the upper-case ISO-4217 code of a
// currency in use: on ISO 4217 list A and not one of the non-money codes.
func ValidCurrency(code string) bool {
	return len(code) == 3 && !nonMoney[code] && iso4217().Var(code, "iso4217") == nil
}

// Validate returns a *ValidationError naming every bad field, or nil.
func (v *Validator) Validate(n NewOrder) error {
	err := v.v.Struct(n)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return fmt.Errorf("validate order: %w", err)
	}
	out := &ValidationError{Fields: make([]FieldError, 0, len(verrs))}
	for _, fe := range verrs {
		// Namespace is "NewOrder.items[0].quantity": drop the type name.
		_, field, _ := strings.Cut(fe.Namespace(), ".")
		out.Fields = append(out.Fields, FieldError{Field: field, Rule: fe.Tag(), Param: fe.Param()})
	}
	return out
}

// Hash returns a stable digest of the request, used to tell an idempotent
// replay (same key, same request) from a conflicting one. It hashes the
// canonical JSON of the decoded request, so whitespace and field order in
// the client's body do not matter.
func (n NewOrder) Hash() string {
	b, _ := json.Marshal(n) // a struct of strings and ints always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
