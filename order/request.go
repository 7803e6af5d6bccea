package order

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
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
	Currency   string    `json:"currency" validate:"required,iso4217"`
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
	// printable: valid UTF-8 without control characters, and not only
	// whitespace. Keeps logs, CSV exports and terminals sane.
	_ = v.RegisterValidation("printable", func(fl validator.FieldLevel) bool {
		s := fl.Field().String()
		if !utf8.ValidString(s) || strings.TrimSpace(s) == "" {
			return false
		}
		for _, r := range s {
			if unicode.IsControl(r) || r == utf8.RuneError {
				return false
			}
		}
		return true
	})
	return &Validator{v: v}
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
