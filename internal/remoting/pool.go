package remoting

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// PoolOptions configures a Pool. The zero value is usable.
type PoolOptions struct {
	// Size is the number of connections kept per address (default 2).
	// A Client carries any number of concurrent calls, matched by opaque,
	// so a few connections are enough; more only spread the writes.
	Size int
	// DialTimeout bounds each dial (default 1s); a call's context
	// deadline, when sooner, bounds it instead.
	DialTimeout time.Duration
	// Client configures every connection.
	Client ClientOptions
}

// Pool keeps up to Size connections per address, dialled on first use
// and replaced when they fail. It is safe for concurrent use.
type Pool struct {
	opts PoolOptions

	mu     sync.Mutex
	slots  map[string][]*Client
	next   map[string]int
	closed bool
}

// ErrPoolClosed is returned by a Pool after Close.
var ErrPoolClosed = errors.New("remoting: pool closed")

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.Size <= 0 {
		opts.Size = 2
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = time.Second
	}
	return &Pool{opts: opts, slots: map[string][]*Client{}, next: map[string]int{}}
}

// Invoke sends req to addr on a pooled connection and waits for the
// answer, within ctx. A request that never left a connection which had
// failed meanwhile (ErrNotSent) is sent once more on a fresh one; nothing
// else is retried.
func (p *Pool) Invoke(ctx context.Context, addr string, req *Command) (*Command, error) {
	c, fresh, err := p.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	resp, err := c.Invoke(ctx, req)
	if err != nil && !fresh && errors.Is(err, ErrNotSent) && ctx.Err() == nil {
		p.discard(addr, c)
		if c, _, err = p.get(ctx, addr); err != nil {
			return nil, err
		}
		resp, err = c.Invoke(ctx, req)
	}
	if err != nil && c.Err() == nil && ctx.Err() != nil {
		// The peer did not answer in time. The connection may be stuck
		// behind a hung peer: drop it, so the next call dials anew rather
		// than queueing behind this one.
		p.discard(addr, c)
	}
	return resp, err
}

// InvokeOneway sends req to addr with the one-way flag on a pooled
// connection and does not wait for an answer; ctx's deadline, when sooner
// than the write timeout, bounds the write. A request that never left a
// connection which had failed meanwhile is written once more on a fresh one.
func (p *Pool) InvokeOneway(ctx context.Context, addr string, req *Command) error {
	c, fresh, err := p.get(ctx, addr)
	if err != nil {
		return err
	}
	err = c.InvokeOneway(ctx, req)
	if err != nil && !fresh && errors.Is(err, ErrNotSent) && ctx.Err() == nil {
		p.discard(addr, c)
		if c, _, err = p.get(ctx, addr); err != nil {
			return err
		}
		err = c.InvokeOneway(ctx, req)
	}
	return err
}

// To returns an Invoker that sends to addr through the pool.
func (p *Pool) To(addr string) Invoker { return poolInvoker{p, addr} }

type poolInvoker struct {
	p    *Pool
	addr string
}

func (i poolInvoker) Invoke(ctx context.Context, req *Command) (*Command, error) {
	return i.p.Invoke(ctx, i.addr, req)
}

// get returns the next slot's connection for addr, dialling it when it is
// missing or failed; fresh reports a connection dialled by this call.
func (p *Pool) get(ctx context.Context, addr string) (c *Client, fresh bool, err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, ErrPoolClosed
	}
	slots := p.slots[addr]
	if slots == nil {
		slots = make([]*Client, p.opts.Size)
		p.slots[addr] = slots
	}
	i := p.next[addr] % len(slots)
	p.next[addr] = i + 1
	if c := slots[i]; c != nil && c.Err() == nil {
		p.mu.Unlock()
		return c, false, nil
	}
	p.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	defer cancel()
	c, err = Dial(dctx, addr, p.opts.Client)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, false, ErrPoolClosed
	}
	if old := slots[i]; old != nil && old.Err() == nil {
		// Another caller filled the slot while this one dialled.
		go c.Close()
		return old, false, nil
	} else if old != nil {
		go old.Close()
	}
	slots[i] = c
	return c, true, nil
}

// discard closes c and empties its slot.
func (p *Pool) discard(addr string, c *Client) {
	p.mu.Lock()
	for i, s := range p.slots[addr] {
		if s == c {
			p.slots[addr][i] = nil
		}
	}
	p.mu.Unlock()
	go c.Close()
}

// Close closes every connection. It is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*Client
	for _, slots := range p.slots {
		for _, c := range slots {
			if c != nil {
				all = append(all, c)
			}
		}
	}
	p.slots = map[string][]*Client{}
	p.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
}
