// Package group runs concurrent calls to one dependency as groups: one
// write (a MySQL transaction, a Redis pipeline) for several callers, each
// of whom gets its own result. A group forms only while another group is
// being written; a call that finds none under way is written at once, so
// a lone caller never waits. No goroutine outlives a call.
package group

import (
	"context"
	"sync"
	"time"
)

// Config bounds a group.
type Config struct {
	// Window is how long the first call of a group waits for others while
	// another group is being written. Default 2ms.
	Window time.Duration
	// MaxBatch is the largest group; a full group is written at once.
	// Default 32.
	MaxBatch int
}

// Grouper groups calls of T into writes returning one R per T.
type Grouper[T, R any] struct {
	cfg   Config
	write func(ctx context.Context, items []T) []R

	mu       sync.Mutex
	open     *batch[T, R]
	writing  int           // groups being written now
	finished chan struct{} // closed (and replaced) when a group's write ends
}

type batch[T, R any] struct {
	items   []T
	results []R
	full    chan struct{} // closed when MaxBatch items joined
	done    chan struct{} // closed when results is set
}

// New returns a Grouper whose groups are written by write, which must
// return one result per item, in order. write runs on the context of the
// group's first call without its cancellation: it must bound itself.
func New[T, R any](cfg Config, write func(ctx context.Context, items []T) []R) *Grouper[T, R] {
	if cfg.Window <= 0 {
		cfg.Window = 2 * time.Millisecond
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 32
	}
	return &Grouper[T, R]{cfg: cfg, write: write}
}

// Do adds item to a group and returns its result. ok is false when ctx
// ended before the group was written: the group may still write item.
func (g *Grouper[T, R]) Do(ctx context.Context, item T) (r R, ok bool) {
	g.mu.Lock()
	b, lead := g.open, false
	if b == nil {
		b = &batch[T, R]{full: make(chan struct{}), done: make(chan struct{})}
		g.open, lead = b, true
	}
	i := len(b.items)
	b.items = append(b.items, item)
	if len(b.items) == g.cfg.MaxBatch {
		g.open = nil
		close(b.full)
	}
	busy := g.writing > 0
	if g.finished == nil {
		g.finished = make(chan struct{})
	}
	finished := g.finished
	g.mu.Unlock()

	if !lead {
		select {
		case <-b.done:
			return b.results[i], true
		case <-ctx.Done():
			return r, false
		}
	}
	if busy {
		// Gather calls while the running group is written, but no longer
		// than the window: the group goes when it is full, when the
		// window ends, or when the running write ends first.
		t := time.NewTimer(g.cfg.Window)
		select {
		case <-b.full:
		case <-t.C:
		case <-finished:
		case <-ctx.Done():
		}
		t.Stop()
	}
	g.mu.Lock()
	if g.open == b {
		g.open = nil
	}
	g.writing++
	items := b.items
	g.mu.Unlock()

	// The members wait on this write whatever happens to the leader's
	// call: it runs on the leader's context without its cancellation.
	b.results = g.write(context.WithoutCancel(ctx), items)
	close(b.done)

	g.mu.Lock()
	g.writing--
	if g.finished != nil {
		close(g.finished)
		g.finished = nil
	}
	g.mu.Unlock()
	return b.results[i], true
}
