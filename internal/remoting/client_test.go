package remoting

import (
	"bufio"
	"context"
	"errors"
	"net"
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
