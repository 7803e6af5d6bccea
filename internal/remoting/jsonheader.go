package remoting

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSONHeaderFast decodes the flat header shape every RocketMQ client
// writes, without reflection. It returns ok=false on anything it does not
// handle (floats, nested values, odd escapes, invalid UTF-8, malformed
// input); the caller then falls back to encoding/json, which has the last
// word on both success and error.
func parseJSONHeaderFast(b []byte) (h jsonHeader, lang string, ok bool) {
	p := jsonParser{b: b}
	p.ws()
	if !p.eat('{') {
		return h, "", false
	}
	lang = "unknown"
	p.ws()
	if p.eat('}') {
		p.ws()
		return h, lang, p.i == len(p.b)
	}
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return h, "", false
		}
		p.ws()
		if !p.eat(':') {
			return h, "", false
		}
		p.ws()
		switch key {
		case "code":
			n, ok := p.int(64)
			if !ok {
				return h, "", false
			}
			h.Code = int(n)
		case "version":
			n, ok := p.int(64)
			if !ok {
				return h, "", false
			}
			h.Version = int(n)
		case "opaque":
			n, ok := p.int(32)
			if !ok {
				return h, "", false
			}
			h.Opaque = int32(n)
		case "flag":
			n, ok := p.int(32)
			if !ok {
				return h, "", false
			}
			h.Flag = int32(n)
		case "remark":
			if p.null() {
				break
			}
			s, ok := p.str()
			if !ok {
				return h, "", false
			}
			h.Remark = s
		case "language":
			if p.null() {
				lang = "unknown"
				break
			}
			s, ok := p.str()
			if !ok {
				return h, "", false
			}
			lang = s
			if s == "" {
				lang = "unknown"
			}
		case "extFields":
			if p.null() {
				h.ExtFields = nil
				break
			}
			if !p.eat('{') {
				return h, "", false
			}
			if h.ExtFields == nil {
				h.ExtFields = make(map[string]string, 16)
			}
			p.ws()
			if !p.eat('}') {
				for {
					p.ws()
					k, ok := p.str()
					if !ok {
						return h, "", false
					}
					p.ws()
					if !p.eat(':') {
						return h, "", false
					}
					p.ws()
					v, ok := p.str()
					if !ok {
						return h, "", false
					}
					h.ExtFields[k] = v
					p.ws()
					if p.eat('}') {
						break
					}
					if !p.eat(',') {
						return h, "", false
					}
				}
			}
		case "serializeTypeCurrentRPC": // Java adds it; ignored
			if _, ok := p.str(); !ok {
				return h, "", false
			}
		default:
			// encoding/json matches keys case-insensitively and checks the
			// value's type: leave any other key to it.
			return h, "", false
		}
		p.ws()
		if p.eat('}') {
			break
		}
		if !p.eat(',') {
			return h, "", false
		}
	}
	p.ws()
	return h, lang, p.i == len(p.b)
}

type jsonParser struct {
	b []byte
	i int
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonParser) null() bool {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// int reads a JSON integer that fits in bits; anything else is not ok.
func (p *jsonParser) int(bits int) (int64, bool) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.b[digits] == '0' && p.i-digits > 1) {
		return 0, false
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, bits)
	return n, err == nil
}

// str reads a JSON string with the common escapes.
func (p *jsonParser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	// Fast scan: no escapes and ASCII only.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.i++
	}
	out := make([]byte, 0, p.i-start+16)
	out = append(out, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), true
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", false // let encoding/json decide what to do
			}
			out = append(out, p.b[p.i:p.i+size]...)
			p.i += size
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return "", false
			}
			e := p.b[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", false
				}
				if utf16.IsSurrogate(r) {
					if !(p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u') {
						return "", false
					}
					p.i += 2
					r2, ok := p.hex4()
					if !ok {
						return "", false
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", false
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", false
			}
		default:
			out = append(out, c)
			p.i++
		}
	}
	return "", false
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}
