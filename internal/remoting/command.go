// Package remoting implements the RocketMQ remoting protocol: the
// length-prefixed frame, its JSON and binary (ROCKETMQ) header codecs, the
// request and response codes, and a small client that sends requests and
// matches responses by opaque.
//
// Frame layout (all integers big-endian):
//
//	int32 totalLength   4 + headerLength + bodyLength
//	int32 headerMark    high byte: codec (0 JSON, 1 ROCKETMQ); low 24 bits: headerLength
//	header              headerLength bytes
//	body                the rest
package remoting

import (
	"fmt"
	"strconv"
	"sync/atomic"
)

// Command is one request or response of the remoting protocol.
type Command struct {
	Code     int
	Language string
	Version  int
	Opaque   int32
	Flag     int32
	Remark   string
	// Ext holds the header's extFields; every value is a string on the wire.
	Ext  map[string]string
	Body []byte
	// Codec is the header codec the command was decoded with (CodecJSON or
	// CodecRocketMQ); Encode uses it, and NewResponse copies it from the
	// request as the Java server does.
	Codec byte
}

var opaqueCounter atomic.Int32

// NextOpaque returns a process-wide increasing opaque for a new request.
func NextOpaque() int32 { return opaqueCounter.Add(1) }

// NewRequest returns a request with a fresh opaque and the given ext fields.
func NewRequest(code int, ext map[string]string, body []byte) *Command {
	if ext == nil {
		ext = map[string]string{}
	}
	return &Command{Code: code, Language: "GO", Version: Version, Opaque: NextOpaque(), Ext: ext, Body: body}
}

// NewResponse returns the response to req with the given code and remark:
// same opaque, the response flag set, and the request's header codec.
func NewResponse(req *Command, code int, remark string) *Command {
	return &Command{
		Code:     code,
		Language: "JAVA",
		Version:  Version,
		Opaque:   req.Opaque,
		Flag:     FlagResponse,
		Remark:   remark,
		Ext:      map[string]string{},
		Codec:    req.Codec,
	}
}

// IsResponse reports whether the response flag bit is set.
func (c *Command) IsResponse() bool { return c.Flag&FlagResponse != 0 }

// IsOneway reports whether the one-way flag bit is set. Note that the Go
// client never sets it, even for its one-way requests.
func (c *Command) IsOneway() bool { return c.Flag&FlagOneway != 0 }

// ExtInt64 returns the ext field key parsed as a decimal integer, or def
// when it is missing or malformed.
func (c *Command) ExtInt64(key string, def int64) int64 {
	v, ok := c.Ext[key]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return def
	}
	return n
}

// ExtBool returns the ext field key parsed as a boolean ("true"/"false").
func (c *Command) ExtBool(key string) bool {
	b, _ := strconv.ParseBool(c.Ext[key])
	return b
}

// String describes the command for logs, without the body.
func (c *Command) String() string {
	return fmt.Sprintf("code=%d opaque=%d flag=%d remark=%q ext=%v body=%d", c.Code, c.Opaque, c.Flag, c.Remark, c.Ext, len(c.Body))
}
