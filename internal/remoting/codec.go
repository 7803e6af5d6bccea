package remoting

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"unicode/utf8"
)

// DefaultMaxFrameSize is the largest frame accepted when no limit is given;
// it matches the Java remoting default (16 MiB).
const DefaultMaxFrameSize = 16 << 20

// Errors returned by the frame decoder.
var (
	// ErrFrameTooLarge means a frame announced more bytes than allowed; the
	// stream cannot be resynchronised and the connection should be closed.
	ErrFrameTooLarge = errors.New("remoting: frame too large")
	// ErrMalformed means a frame or header could not be decoded.
	ErrMalformed = errors.New("remoting: malformed frame")
)

// ReadCommand reads one frame from r and decodes it. A frame longer than
// maxFrame (DefaultMaxFrameSize when <= 0) is refused with ErrFrameTooLarge
// before its body is read, so memory stays bounded.
func ReadCommand(r io.Reader, maxFrame int) (*Command, error) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameSize
	}
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(lb[:])))
	if n < 4 {
		return nil, fmt.Errorf("%w: frame length %d", ErrMalformed, n)
	}
	if n > int64(maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, maxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return Decode(buf)
}

// Decode decodes a frame without its leading 4-byte total length: the
// header mark, the header and the body. The body aliases frame.
func Decode(frame []byte) (*Command, error) {
	if len(frame) < 4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(frame))
	}
	mark := binary.BigEndian.Uint32(frame)
	codec := byte(mark >> 24)
	hl := int(mark & 0xFFFFFF)
	if hl > len(frame)-4 {
		return nil, fmt.Errorf("%w: header length %d exceeds frame of %d bytes", ErrMalformed, hl, len(frame))
	}
	header := frame[4 : 4+hl]
	var (
		cmd *Command
		err error
	)
	switch codec {
	case CodecJSON:
		cmd, err = decodeJSONHeader(header)
	case CodecRocketMQ:
		cmd, err = decodeBinaryHeader(header)
	default:
		return nil, fmt.Errorf("%w: unknown header codec %d", ErrMalformed, codec)
	}
	if err != nil {
		return nil, err
	}
	cmd.Codec = codec
	if body := frame[4+hl:]; len(body) > 0 {
		cmd.Body = body
	}
	return cmd, nil
}

type jsonHeader struct {
	Code      int               `json:"code"`
	Language  json.RawMessage   `json:"language"`
	Version   int               `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int32             `json:"flag"`
	Remark    string            `json:"remark"`
	ExtFields map[string]string `json:"extFields"`
}

func decodeJSONHeader(b []byte) (*Command, error) {
	h, lang, ok := parseJSONHeaderFast(b)
	if !ok {
		var err error
		if h, lang, err = decodeJSONHeaderStd(b); err != nil {
			return nil, err
		}
	}
	if h.ExtFields == nil {
		h.ExtFields = map[string]string{}
	}
	return &Command{Code: h.Code, Language: lang, Version: h.Version, Opaque: h.Opaque, Flag: h.Flag, Remark: h.Remark, Ext: h.ExtFields}, nil
}

// decodeJSONHeaderStd decodes a JSON header with encoding/json: the
// reference the fast path falls back to.
func decodeJSONHeaderStd(b []byte) (jsonHeader, string, error) {
	var h jsonHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return h, "", fmt.Errorf("%w: json header: %v", ErrMalformed, err)
	}
	lang := "unknown"
	var s string
	if json.Unmarshal(h.Language, &s) == nil && s != "" {
		lang = s
	}
	h.Language = nil
	return h, lang, nil
}

func decodeBinaryHeader(b []byte) (*Command, error) {
	const fixed = 2 + 1 + 2 + 4 + 4 + 4
	if len(b) < fixed {
		return nil, fmt.Errorf("%w: binary header of %d bytes", ErrMalformed, len(b))
	}
	cmd := &Command{
		Code:    int(int16(binary.BigEndian.Uint16(b[0:]))),
		Version: int(int16(binary.BigEndian.Uint16(b[3:]))),
		Opaque:  int32(binary.BigEndian.Uint32(b[5:])),
		Flag:    int32(binary.BigEndian.Uint32(b[9:])),
		Ext:     map[string]string{},
	}
	switch b[2] {
	case LanguageJava:
		cmd.Language = "JAVA"
	case LanguageGo:
		cmd.Language = "GO"
	default:
		cmd.Language = "unknown"
	}
	remarkLen := int64(int32(binary.BigEndian.Uint32(b[13:])))
	p := b[17:]
	if remarkLen < 0 || remarkLen > int64(len(p)) {
		return nil, fmt.Errorf("%w: remark length %d", ErrMalformed, remarkLen)
	}
	cmd.Remark = string(p[:remarkLen])
	p = p[remarkLen:]
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: missing ext length", ErrMalformed)
	}
	extLen := int64(int32(binary.BigEndian.Uint32(p)))
	p = p[4:]
	if extLen < 0 || extLen > int64(len(p)) {
		return nil, fmt.Errorf("%w: ext length %d", ErrMalformed, extLen)
	}
	p = p[:extLen]
	for len(p) > 0 {
		if len(p) < 2 {
			return nil, fmt.Errorf("%w: truncated ext key length", ErrMalformed)
		}
		kl := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if kl > len(p) {
			return nil, fmt.Errorf("%w: ext key length %d", ErrMalformed, kl)
		}
		k := string(p[:kl])
		p = p[kl:]
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: truncated ext value length", ErrMalformed)
		}
		vl := int64(int32(binary.BigEndian.Uint32(p)))
		p = p[4:]
		if vl < 0 || vl > int64(len(p)) {
			return nil, fmt.Errorf("%w: ext value length %d", ErrMalformed, vl)
		}
		cmd.Ext[k] = string(p[:vl])
		p = p[vl:]
	}
	return cmd, nil
}

// Encode returns the whole frame for cmd, including the total length, with
// the header in cmd.Codec.
func Encode(cmd *Command) []byte {
	return AppendFrame(make([]byte, 0, 256+len(cmd.Body)), cmd)
}

// AppendFrame appends the frame for cmd to dst.
func AppendFrame(dst []byte, cmd *Command) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	hs := len(dst)
	if cmd.Codec == CodecRocketMQ {
		dst = appendBinaryHeader(dst, cmd)
	} else {
		dst = appendJSONHeader(dst, cmd)
	}
	hl := len(dst) - hs
	dst = append(dst, cmd.Body...)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	binary.BigEndian.PutUint32(dst[start+4:], uint32(cmd.Codec)<<24|uint32(hl)&0xFFFFFF)
	return dst
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func appendJSONHeader(dst []byte, cmd *Command) []byte {
	lang := cmd.Language
	if lang == "" {
		lang = "GO"
	}
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Code), 10)
	dst = append(dst, `,"language":`...)
	dst = appendJSONString(dst, lang)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Version), 10)
	dst = append(dst, `,"opaque":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Opaque), 10)
	dst = append(dst, `,"flag":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Flag), 10)
	dst = append(dst, `,"remark":`...)
	dst = appendJSONString(dst, cmd.Remark)
	dst = append(dst, `,"extFields":{`...)
	for i, k := range sortedKeys(cmd.Ext) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, cmd.Ext[k])
	}
	return append(dst, "}}"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal; invalid UTF-8 is
// replaced by U+FFFD as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

func appendBinaryHeader(dst []byte, cmd *Command) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(cmd.Code)))
	switch cmd.Language {
	case "JAVA":
		dst = append(dst, LanguageJava)
	default:
		dst = append(dst, LanguageGo)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(cmd.Version)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(cmd.Opaque))
	dst = binary.BigEndian.AppendUint32(dst, uint32(cmd.Flag))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(cmd.Remark)))
	dst = append(dst, cmd.Remark...)
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, k := range sortedKeys(cmd.Ext) {
		v := cmd.Ext[k]
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(k)))
		dst = append(dst, k...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	return dst
}
