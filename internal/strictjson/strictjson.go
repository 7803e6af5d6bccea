// Package strictjson decodes request bodies that money depends on: one
// JSON object, no unknown fields, no trailing data, and no key given twice.
//
// encoding/json keeps the last of duplicate keys and matches field names
// case-insensitively, so {"order_id":A,"ORDER_ID":B} is order B to the
// decoder while a proxy, a log line or the signer's own parser may read A.
// Decode refuses such a body before decoding it, naming the key.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// ErrDuplicateKey is wrapped by the error for a key given twice in one
// object (compared as encoding/json matches field names: case-folded).
var ErrDuplicateKey = errors.New("duplicate key")

// Decode decodes body, which must hold exactly one JSON value, into v,
// refusing unknown fields (when v is a struct), trailing data and
// duplicate keys at any depth. A duplicate-key error names the key by its
// path, e.g. `duplicate key "items[0].sku"`.
func Decode(body []byte, v any) error {
	if err := checkKeys(body); err != nil {
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
// in one object. Syntax errors are left to the decoder, which words them
// better; checkKeys then returns nil.
func checkKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // no float conversion of numbers we only skip
	type frame struct {
		object bool
		seen   map[string]bool
		path   string
		index  int    // next element index (arrays)
		key    string // pending key (objects)
	}
	var stack []*frame
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
			f.key = name
			expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, seen: map[string]bool{}, path: child()})
			expectKey = true
		case json.Delim('['):
			stack = append(stack, &frame{path: child()})
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
