package rmqtest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

// rawFrame builds a frame with an arbitrary header and body.
func rawFrame(codec byte, header, body []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, int32(4+len(header)+len(body)))
	_ = binary.Write(&b, binary.BigEndian, uint32(codec)<<24|uint32(len(header)))
	b.Write(header)
	b.Write(body)
	return b.Bytes()
}

// expectClosed waits for the server to close c, reading and discarding
// whatever it sends first.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server did not close the connection")
	}
}

// healthy checks that both listeners still answer real requests.
func healthy(t *testing.T, s *rmqtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := remoting.Call(ctx, s.NameServerAddr(), remoting.NewRequest(remoting.GetRouteInfoByTopic, map[string]string{"topic": "bad"}, nil))
	if err != nil || resp.Code != remoting.Success {
		t.Fatalf("name server route query after bad input: resp %v err %v", resp, err)
	}
	resp, err = remoting.Call(ctx, s.BrokerAddr(), remoting.NewRequest(remoting.GetMaxOffset, map[string]string{"topic": "bad", "queueId": "0"}, nil))
	if err != nil || resp.Code != remoting.Success {
		t.Fatalf("broker request after bad input: resp %v err %v", resp, err)
	}
}

func TestBadInput(t *testing.T) {
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{"bad": 4}, MaxFrameSize: 64 << 10})
	dial := func(t *testing.T, addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tests := []struct {
		name  string
		input func() []byte
	}{
		{"random bytes", func() []byte {
			b := make([]byte, 4096)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{"huge announced length", func() []byte { return []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0} }},
		{"negative length", func() []byte { return []byte{0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0} }},
		{"over MaxFrameSize", func() []byte {
			return rawFrame(0, []byte(`{"code":105,"opaque":1,"extFields":{}}`), make([]byte, 65<<10))
		}},
		{"header not JSON", func() []byte { return rawFrame(0, []byte("this is not json"), nil) }},
		{"header length beyond frame", func() []byte {
			f := rawFrame(0, []byte(`{"code":105}`), nil)
			binary.BigEndian.PutUint32(f[4:], 1000)
			return f
		}},
		{"unknown codec", func() []byte { return rawFrame(7, []byte(`{"code":105}`), nil) }},
		{"numeric ext value", func() []byte { return rawFrame(0, []byte(`{"code":105,"extFields":{"topic":5}}`), nil) }},
		{"truncated binary header", func() []byte { return rawFrame(1, []byte{0, 105, 0}, nil) }},
	}
	for _, tt := range tests {
		for _, listener := range []string{"namesrv", "broker"} {
			t.Run(tt.name+"/"+listener, func(t *testing.T) {
				addr := s.BrokerAddr()
				if listener == "namesrv" {
					addr = s.NameServerAddr()
				}
				c := dial(t, addr)
				if _, err := c.Write(tt.input()); err != nil {
					t.Fatalf("write: %v", err)
				}
				expectClosed(t, c)
				healthy(t, s)
			})
		}
	}

	t.Run("disconnect mid-frame", func(t *testing.T) {
		for range 20 {
			c := dial(t, s.BrokerAddr())
			f := rawFrame(0, []byte(`{"code":10,"opaque":1,"extFields":{"topic":"bad"}}`), []byte("body"))
			_, _ = c.Write(f[:len(f)/2])
			c.Close()
		}
		healthy(t, s)
	})

	t.Run("stalled half frame does not block others", func(t *testing.T) {
		c := dial(t, s.BrokerAddr())
		f := rawFrame(0, []byte(`{"code":30,"opaque":1,"extFields":{"topic":"bad","queueId":"0"}}`), nil)
		_, _ = c.Write(f[:10])
		healthy(t, s)
	})

	t.Run("unknown request code", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, addr := range []string{s.NameServerAddr(), s.BrokerAddr()} {
			resp, err := remoting.Call(ctx, addr, remoting.NewRequest(9999, nil, nil))
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if resp.Code != remoting.RequestCodeNotSupported || !strings.Contains(resp.Remark, "9999") {
				t.Errorf("unknown code reply: got code %d remark %q, want 3 naming 9999", resp.Code, resp.Remark)
			}
		}
	})

	t.Run("binary header request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req := remoting.NewRequest(remoting.GetRouteInfoByTopic, map[string]string{"topic": "bad"}, nil)
		req.Codec = remoting.CodecRocketMQ
		resp, err := remoting.Call(ctx, s.NameServerAddr(), req)
		if err != nil || resp.Code != remoting.Success || resp.Codec != remoting.CodecRocketMQ {
			t.Fatalf("binary request: resp %v err %v, want success in the binary codec", resp, err)
		}
	})
}
