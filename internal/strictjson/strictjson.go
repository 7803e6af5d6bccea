// Package strictjson decodes request bodies that money depends on: one
// JSON object, no unknown fields, no trailing data, and no key given twice.
//
// encoding/json keeps the last of duplicate keys and matches field names
// case-insensitively, so {"order_id":A,"ORDER_ID":B} is order B to the
// decoder while a proxy, a log line or the signer's own parser may read A.
// Decode refuses such a body before decoding it, naming the key, and takes
// struct field names only as their json tags spell them.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

// ErrDuplicateKey is wrapped by the error for a key given twice in one
// object (compared as encoding/json matches field names: case-folded).
var ErrDuplicateKey = errors.New("duplicate key")

// ErrKeyCase is wrapped by the error for a key that names a struct field
// in another case ("Amount" for "amount"): encoding/json would take it,
// the contract does not.
var ErrKeyCase = errors.New("key in the wrong case")

// Decode decodes body, which must hold exactly one JSON value, into v,
// refusing unknown fields (when v is a struct), field names in another
// case than their json tag, trailing data and duplicate keys at any
// depth. A key error names the key by its path, e.g.
// `duplicate key "items[0].sku"`.
func Decode(body []byte, v any) error {
	if err := checkKeys(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// checkKeys walks the tokens of body and reports the first key given twice
// in one object, and, where the decoding target t (nil: none) says the
// object is a struct, the first key that names one of its fields in
// another case. Syntax errors are left to the decoder, which words them
// better; checkKeys then returns nil.
func checkKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // no float conversion of numbers we only skip
	type frame struct {
		object bool
		seen   map[string]bool
		path   string
		index  int    // next element index (arrays)
		key    string // pending key (objects)
		typ    reflect.Type
		fields map[string]field // folded name → field, when typ is a struct
	}
	var stack []*frame
	// childType is the target type of the value about to be read.
	childType := func() reflect.Type {
		if len(stack) == 0 {
			return t
		}
		f := stack[len(stack)-1]
		if f.object {
			if fl, ok := f.fields[fold(f.key)]; ok {
				return fl.typ
			}
			return nil
		}
		if e := elem(f.typ); e != nil && (e.Kind() == reflect.Slice || e.Kind() == reflect.Array) {
			return e.Elem()
		}
		return nil
	}
	// child returns the path of the value about to be read in the top frame.
	child := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.object {
			if f.path == "" {
				return f.key
			}
			return f.path + "." + f.key
		}
		p := f.path + "[" + strconv.Itoa(f.index) + "]"
		f.index++
		return p
	}
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error the decoder will report
		}
		if expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1].object
				continue
			}
			name, _ := tok.(string)
			f := stack[len(stack)-1]
			folded := fold(name)
			if f.seen[folded] {
				p := name
				if f.path != "" {
					p = f.path + "." + name
				}
				return fmt.Errorf("%w %q", ErrDuplicateKey, p)
			}
			f.seen[folded] = true
			if fl, ok := f.fields[folded]; ok && fl.name != name {
				p := name
				if f.path != "" {
					p = f.path + "." + name
				}
				return fmt.Errorf("%w: %q, the field is %q", ErrKeyCase, p, fl.name)
			}
			f.key = name
			expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			typ := childType()
			stack = append(stack, &frame{object: true, seen: map[string]bool{}, path: child(), typ: typ, fields: fieldsOf(typ)})
			expectKey = true
		case json.Delim('['):
			typ := childType()
			stack = append(stack, &frame{path: child(), typ: typ})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			expectKey = len(stack) > 0 && stack[len(stack)-1].object
		default:
			// A scalar: an array element or an object member's value.
			if len(stack) > 0 {
				f := stack[len(stack)-1]
				if f.object {
					expectKey = true
				} else {
					f.index++
				}
			}
		}
	}
}

// field is a struct field as encoding/json names it.
type field struct {
	name string
	typ  reflect.Type
}

// elem is t without pointers; nil stays nil.
func elem(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fieldsOf lists the JSON names of t's exported fields by folded name, or
// nil when t is not a struct. Embedded structs are not flattened: the
// bodies decoded here have none.
func fieldsOf(t reflect.Type) map[string]field {
	t = elem(t)
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	out := map[string]field{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[fold(name)] = field{name: name, typ: f.Type}
	}
	return out
}

// fold maps a key to the form encoding/json compares field names in: it
// matches names with bytes.EqualFold, which folds Unicode simple case
// (so "K" and the Kelvin sign U+212A are one letter). Each rune becomes the
// smallest rune of its fold orbit.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		min := r
		for c := unicode.SimpleFold(r); c != r; c = unicode.SimpleFold(c) {
			if c < min {
				min = c
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}
