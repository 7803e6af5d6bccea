package rmqtest

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// endpoint is one TCP listener (the NameServer's or the broker's) with the
// connections it accepted. It can be stopped and started again on the same
// address.
type endpoint struct {
	name     string
	addr     string // "127.0.0.1:port", fixed after the first bind
	maxFrame int
	log      *slog.Logger
	handle   func(c *conn, req *remoting.Command) *remoting.Command
	// blocking reports whether a request may wait (a long-poll pull); those
	// run on their own goroutine, the rest inline in the connection's
	// reader, in arrival order.
	blocking func(req *remoting.Command) bool
	onClose  func(c *conn)
	delay    func() time.Duration // extra delay before each response

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*conn]struct{}
	running bool
	wg      sync.WaitGroup
}

func (e *endpoint) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return nil
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		return err
	}
	e.addr = ln.Addr().String()
	e.ln = ln
	e.conns = map[*conn]struct{}{}
	e.running = true
	e.wg.Add(1)
	go e.acceptLoop(ln)
	return nil
}

// stop closes the listener and every connection, and waits until all their
// goroutines have returned.
func (e *endpoint) stop() {
	e.mu.Lock()
	if !e.running {
		e.mu.Unlock()
		return
	}
	e.running = false
	_ = e.ln.Close()
	conns := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	e.wg.Wait()
}

func (e *endpoint) isRunning() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running
}

func (e *endpoint) connections() []*conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		out = append(out, c)
	}
	return out
}

func (e *endpoint) acceptLoop(ln net.Listener) {
	defer e.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		c := &conn{ep: e, nc: nc, remote: nc.RemoteAddr().String(), done: make(chan struct{})}
		e.mu.Lock()
		if !e.running {
			e.mu.Unlock()
			_ = nc.Close()
			continue
		}
		e.conns[c] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		e.log.Info("connection opened", "listener", e.name, "remote", c.remote)
		go c.serve()
	}
}

// conn is one accepted client connection. Requests are handled
// concurrently (a held long-poll pull must not block a send on the same
// socket); whole frames are written under wmu.
type conn struct {
	ep     *endpoint
	nc     net.Conn
	remote string

	// client: the connection carried a client's own traffic (a send, pull
	// or heartbeat), not only END_TRANSACTION requests.
	client atomic.Bool

	wmu       sync.Mutex
	done      chan struct{}
	closeOnce sync.Once
	handlers  sync.WaitGroup
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.nc.Close()
	})
}

func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *conn) serve() {
	e := c.ep
	defer func() {
		c.close()
		c.handlers.Wait()
		if e.onClose != nil {
			e.onClose(c)
		}
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		e.log.Info("connection closed", "listener", e.name, "remote", c.remote)
		e.wg.Done()
	}()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		req, err := remoting.ReadCommand(r, e.maxFrame)
		if err != nil {
			if !c.closed() && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				e.log.Warn("closing connection after bad frame", "listener", e.name, "remote", c.remote, "err", err)
			}
			return
		}
		if req.IsResponse() {
			// Answers to our one-way requests (the Go client answers none of
			// them); nothing waits for them.
			continue
		}
		c.handlers.Add(1)
		if e.blocking != nil && e.blocking(req) || e.delay != nil && e.delay() > 0 {
			go c.dispatch(req)
		} else {
			c.dispatch(req)
		}
	}
}

func (c *conn) dispatch(req *remoting.Command) {
	defer c.handlers.Done()
	resp := c.ep.handle(c, req)
	if resp == nil || req.IsOneway() {
		return
	}
	if c.ep.delay != nil {
		if d := c.ep.delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
	}
	_ = c.send(resp)
}

// send writes one whole frame.
func (c *conn) send(cmd *remoting.Command) error {
	frame := remoting.Encode(cmd)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed() {
		return net.ErrClosed
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(frame); err != nil {
		c.close()
		return err
	}
	return nil
}
