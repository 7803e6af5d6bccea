package remoting

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveOnce accepts one connection and answers each request with handle.
func serveOnce(t *testing.T, handle func(c net.Conn, req *Command)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			req, err := ReadCommand(r, 0)
			if err != nil {
				return
			}
			handle(c, req)
		}
	}()
	return ln.Addr().String()
}

func TestClientMatchesOutOfOrderResponses(t *testing.T) {
	var held *Command
	heldIn := make(chan struct{})
	addr := serveOnce(t, func(c net.Conn, req *Command) {
		// Hold the first request; answer it after the second, and send a
		// server-initiated request in between.
		if held == nil {
			held = req
			close(heldIn)
			return
		}
		notify := NewRequest(NotifyConsumerIDsChanged, map[string]string{"consumerGroup": "g"}, nil)
		notify.Flag = FlagOneway
		_, _ = c.Write(Encode(notify))
		for _, r := range []*Command{req, held} {
			resp := NewResponse(r, Success, "")
			resp.Ext["echo"] = r.Ext["n"]
			_, _ = c.Write(Encode(resp))
		}
	})
	got := make(chan *Command, 1)
	c, err := Dial(context.Background(), addr, ClientOptions{OnRequest: func(_ *Client, req *Command) *Command {
		got <- req
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	first := make(chan *Command, 1)
	go func() {
		resp, err := c.Invoke(ctx, NewRequest(GetMaxOffset, map[string]string{"n": "1"}, nil))
		if err != nil {
			t.Error(err)
		}
		first <- resp
	}()
	<-heldIn // the first request reached the server first
	resp, err := c.Invoke(ctx, NewRequest(GetMaxOffset, map[string]string{"n": "2"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Ext["echo"] != "2" {
		t.Errorf("second response echo %q, want 2", resp.Ext["echo"])
	}
	if r := <-first; r == nil || r.Ext["echo"] != "1" {
		t.Errorf("first response %v, want echo 1", r)
	}
	select {
	case n := <-got:
		if n.Code != NotifyConsumerIDsChanged {
			t.Errorf("server request code %d", n.Code)
		}
	case <-ctx.Done():
		t.Error("server-initiated request not delivered")
	}
}

func TestClientTimeoutAndClose(t *testing.T) {
	addr := serveOnce(t, func(net.Conn, *Command) {}) // never answers
	c, err := Dial(context.Background(), addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Invoke(ctx, NewRequest(HeartBeat, nil, nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want deadline exceeded", err)
	}
	c.Close()
	c.Close()
	if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: got %v, want ErrClosed", err)
	}
}

// TestClientConcurrentCallsEachGetTheirAnswer: 200 calls made at once on
// one connection (the placement's Sender shares two per broker) each get
// the answer to their own request.
func TestClientConcurrentCallsEachGetTheirAnswer(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn, req *Command) {
		resp := NewResponse(req, Success, "")
		resp.Ext["echo"] = req.Ext["n"]
		_, _ = c.Write(Encode(resp))
	})
	c, err := Dial(context.Background(), addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const calls = 200
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n := strconv.Itoa(i)
			resp, err := c.Invoke(ctx, NewRequest(GetMaxOffset, map[string]string{"n": n}, []byte(strings.Repeat("x", i))))
			if err == nil && resp.Ext["echo"] != n {
				err = fmt.Errorf("call %s got the answer to %s", n, resp.Ext["echo"])
			}
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestClientCallsFailWhenThePeerGoes: calls in flight and waiting to
// write when the peer closes the connection all return an error; none
// waits past its context.
func TestClientCallsFailWhenThePeerGoes(t *testing.T) {
	var seen atomic.Int32
	addr := serveOnce(t, func(c net.Conn, req *Command) {
		if seen.Add(1) == 20 {
			c.Close()
		}
	})
	c, err := Dial(context.Background(), addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const calls = 100
	errs := make(chan error, calls)
	start := time.Now()
	for range calls {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := c.Invoke(ctx, NewRequest(GetMaxOffset, nil, []byte(strings.Repeat("y", 64<<10))))
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err == nil {
			t.Fatal("a call answered by nobody succeeded")
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("calls took %s after the peer went, bound 3s", d)
	}
}
