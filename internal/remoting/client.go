package remoting

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by a Client after Close or after its connection
// failed.
var ErrClosed = errors.New("remoting: connection closed")

// ErrNotSent wraps the error of a call whose request never left: the
// connection was already unusable, or writing the frame failed (a peer
// cannot act on part of a frame). Retrying such a call on another
// connection cannot make the peer act twice.
var ErrNotSent = errors.New("remoting: request not sent")

// DefaultTimeout bounds a call when its context has no deadline.
const DefaultTimeout = 5 * time.Second

// ClientOptions configures Dial. The zero value is usable.
type ClientOptions struct {
	// MaxFrameSize bounds incoming frames (DefaultMaxFrameSize when 0).
	MaxFrameSize int
	// WriteTimeout bounds the write of one frame (DefaultTimeout when 0);
	// a call's context deadline, when sooner, bounds it instead. A write
	// that times out closes the connection: part of a frame may be out.
	WriteTimeout time.Duration
	// OnRequest, if set, receives requests the peer sends to the client (for
	// example CHECK_TRANSACTION_STATE) and the connection they came on; a
	// non-nil result is sent back as the response. It runs on its own
	// goroutine.
	OnRequest func(c *Client, req *Command) *Command
}

// Client is one remoting connection: it sends requests and matches the
// responses by opaque. It is safe for concurrent use.
type Client struct {
	conn net.Conn
	opts ClientOptions

	wmu sync.Mutex // serialises whole-frame writes

	mu      sync.Mutex
	pending map[int32]chan *Command
	err     error // set once the connection is unusable
	done    chan struct{}
	wg      sync.WaitGroup
}

// Dial connects to addr ("ip:port") and starts reading responses.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	var d net.Dialer
	if _, ok := ctx.Deadline(); !ok {
		d.Timeout = DefaultTimeout
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Client{conn: conn, opts: opts, pending: map[int32]chan *Command{}, done: make(chan struct{})}
	c.wg.Add(1)
	go c.readLoop()
	return c, nil
}

// Addr returns the remote address.
func (c *Client) Addr() string { return c.conn.RemoteAddr().String() }

func (c *Client) readLoop() {
	defer c.wg.Done()
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		cmd, err := ReadCommand(r, c.opts.MaxFrameSize)
		if err != nil {
			c.fail(err)
			return
		}
		if cmd.IsResponse() {
			c.mu.Lock()
			ch := c.pending[cmd.Opaque]
			delete(c.pending, cmd.Opaque)
			c.mu.Unlock()
			if ch != nil {
				ch <- cmd // buffered, never blocks
			}
			continue
		}
		if h := c.opts.OnRequest; h != nil {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				if resp := h(c, cmd); resp != nil && !cmd.IsOneway() {
					resp.Opaque = cmd.Opaque
					resp.Flag |= FlagResponse
					_ = c.write(context.Background(), resp)
				}
			}()
		}
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("%w: %v", ErrClosed, err)
	close(c.done)
	_ = c.conn.Close()
}

func (c *Client) write(ctx context.Context, cmd *Command) error {
	frame := Encode(cmd)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	wt := c.opts.WriteTimeout
	if wt <= 0 {
		wt = DefaultTimeout
	}
	deadline := time.Now().Add(wt)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetWriteDeadline(deadline)
	_, err := c.conn.Write(frame)
	if err != nil {
		c.fail(err)
	}
	return err
}

// Invoke sends req and waits for the response with the same opaque, until
// ctx is done (or DefaultTimeout passes when ctx has no deadline).
func (c *Client) Invoke(ctx context.Context, req *Command) (*Command, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	ch := make(chan *Command, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	c.pending[req.Opaque] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, req.Opaque)
		c.mu.Unlock()
	}()
	if err := c.write(ctx, req); err != nil {
		return nil, fmt.Errorf("%w: request %d: %w", ErrNotSent, req.Code, err)
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("request %d: %w", req.Code, ctx.Err())
	}
}

// InvokeOneway sends req with the one-way flag and does not wait for an
// answer; ctx's deadline, when set, bounds the write.
func (c *Client) InvokeOneway(ctx context.Context, req *Command) error {
	req.Flag |= FlagOneway
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if err := c.write(ctx, req); err != nil {
		return fmt.Errorf("%w: request %d: %w", ErrNotSent, req.Code, err)
	}
	return nil
}

// Err returns why the connection is unusable, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits for the reader to stop. It is
// idempotent.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	c.wg.Wait()
	return nil
}

// Call dials addr, sends one request, waits for its response and closes the
// connection: the shape of a one-shot admin or probe call.
func Call(ctx context.Context, addr string, req *Command) (*Command, error) {
	c, err := Dial(ctx, addr, ClientOptions{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Invoke(ctx, req)
}
