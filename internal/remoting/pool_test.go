package remoting

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer answers every request with SUCCESS until stopped; accepted
// counts the connections it took.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
	silent   atomic.Bool // read requests but never answer
}

func startEcho(t *testing.T, addr string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() {
				r := bufio.NewReader(c)
				for {
					req, err := ReadCommand(r, 0)
					if err != nil {
						return
					}
					if !s.silent.Load() {
						_, _ = c.Write(Encode(NewResponse(req, Success, "")))
					}
				}
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *echoServer) stop() {
	_ = s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func TestPoolReusesAndReplacesConnections(t *testing.T) {
	srv := startEcho(t, "127.0.0.1:0")
	addr := srv.ln.Addr().String()
	p := NewPool(PoolOptions{Size: 2})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 10 {
		if _, err := p.Invoke(ctx, addr, NewRequest(HeartBeat, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.accepted.Load(); n != 2 {
		t.Fatalf("10 calls opened %d connections, want the pool's 2", n)
	}
	// The peer restarts on the same address: the next calls dial again.
	srv.stop()
	srv2 := startEcho(t, addr)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := p.Invoke(ctx, addr, NewRequest(HeartBeat, nil, nil))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call succeeded after the peer restarted: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if srv2.accepted.Load() == 0 {
		t.Fatal("no new connection to the restarted peer")
	}
}

func TestPoolBoundsCallsToAHungPeer(t *testing.T) {
	srv := startEcho(t, "127.0.0.1:0")
	srv.silent.Store(true)
	p := NewPool(PoolOptions{Size: 1})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := p.Invoke(ctx, srv.ln.Addr().String(), NewRequest(HeartBeat, nil, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the call's deadline", err)
	}
	p.Close()
	if _, err := p.Invoke(context.Background(), srv.ln.Addr().String(), NewRequest(HeartBeat, nil, nil)); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("after Close: %v, want ErrPoolClosed", err)
	}
}

func TestPoolDialRefusedIsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := NewPool(PoolOptions{})
	defer p.Close()
	_, err = p.Invoke(context.Background(), addr, NewRequest(HeartBeat, nil, nil))
	if !errors.Is(err, ErrNotSent) {
		t.Fatalf("got %v, want ErrNotSent", err)
	}
}
