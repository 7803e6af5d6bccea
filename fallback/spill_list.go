package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/order"
)

// Entry is an order waiting in the spill queue, as an operator sees it.
type Entry struct {
	// StreamID is the entry's id in the stream; pages continue after it.
	StreamID string
	OrderID  uuid.UUID
	// Attempts is how many placements failed so far; LastError is the
	// last one's error ("" before the first failure).
	Attempts  int64
	LastError string
	// Order is the queued order; nil if it was placed meanwhile.
	Order *order.Order
}

// ErrInvalidCursor: a page was asked to continue from something that is
// not one of its cursors.
var ErrInvalidCursor = errors.New("invalid spill queue cursor")

// PendingPage returns up to limit entries waiting in the stream after the
// entry after ("" from the oldest), oldest first, with their attempts, last
// error and order, and the cursor of the next page ("" on the last). Each
// page is one XRANGE and one pipeline, however long the queue.
func (q *SpillQueue) PendingPage(ctx context.Context, after string, limit int64) ([]Entry, string, error) {
	start := "-"
	if after != "" {
		if !validStreamID(after) {
			return nil, "", fmt.Errorf("%w: %q", ErrInvalidCursor, after)
		}
		start = "(" + after
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	msgs, err := q.rdb.XRangeN(ctx, q.streamKey(), start, "+", limit+1).Result()
	if err != nil {
		return nil, "", translate(err)
	}
	next := ""
	if int64(len(msgs)) > limit {
		msgs = msgs[:limit]
		next = msgs[len(msgs)-1].ID
	}
	entries := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		id, err := uuid.Parse(fmt.Sprint(m.Values["order_id"]))
		if err != nil {
			continue // the drainer drops such an entry
		}
		entries = append(entries, Entry{StreamID: m.ID, OrderID: id})
	}
	if err := q.fill(ctx, entries, true); err != nil {
		return nil, "", err
	}
	return entries, next, nil
}

// fill reads the attempts, last errors (withErrors) and orders of entries
// in one round trip.
func (q *SpillQueue) fill(ctx context.Context, entries []Entry, withErrors bool) error {
	if len(entries) == 0 {
		return nil
	}
	ids := make([]string, len(entries))
	keys := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.OrderID.String()
		keys[i] = q.orderKey(e.OrderID)
	}
	var attempts, errs *redis.SliceCmd
	var orders *redis.SliceCmd
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		attempts = p.HMGet(ctx, q.attemptsKey(), ids...)
		if withErrors {
			errs = p.HMGet(ctx, q.errorsKey(), ids...)
		}
		orders = p.MGet(ctx, keys...)
		return nil
	})
	if err != nil {
		return translate(err)
	}
	for i := range entries {
		if s, ok := attempts.Val()[i].(string); ok {
			entries[i].Attempts, _ = strconv.ParseInt(s, 10, 64)
		}
		if errs != nil {
			if s, ok := errs.Val()[i].(string); ok {
				entries[i].LastError = s
			}
		}
		if s, ok := orders.Val()[i].(string); ok {
			var o order.Order
			if json.Unmarshal([]byte(s), &o) == nil {
				entries[i].Order = &o
			}
		}
	}
	return nil
}

// DeadPage returns up to limit dead entries after the cursor after (""
// from the oldest), oldest first, with their orders, and the cursor of the
// next page ("" on the last). Dead entries live in one hash, so a page
// reads all of it (HGETALL) and sorts: about 10 ms for 10,000 dead
// entries (docs/console.md has the measurement).
func (q *SpillQueue) DeadPage(ctx context.Context, after string, limit int) ([]DeadEntry, []*order.Order, string, error) {
	var (
		afterT  time.Time
		afterID uuid.UUID
	)
	if after != "" {
		ns, raw, ok := strings.Cut(after, "_")
		n, err := strconv.ParseInt(ns, 10, 64)
		id, perr := uuid.Parse(raw)
		if !ok || err != nil || perr != nil {
			return nil, nil, "", fmt.Errorf("%w: %q", ErrInvalidCursor, after)
		}
		afterT, afterID = time.Unix(0, n).UTC(), id
	}
	dead, err := q.Dead(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	// Dead sorts by time only; ties are broken by id for a stable cursor.
	sort.SliceStable(dead, func(i, j int) bool {
		if !dead[i].DiedAt.Equal(dead[j].DiedAt) {
			return dead[i].DiedAt.Before(dead[j].DiedAt)
		}
		return dead[i].OrderID.String() < dead[j].OrderID.String()
	})
	if after != "" {
		i := sort.Search(len(dead), func(i int) bool {
			d := dead[i]
			return d.DiedAt.After(afterT) || (d.DiedAt.Equal(afterT) && d.OrderID.String() > afterID.String())
		})
		dead = dead[i:]
	}
	next := ""
	if len(dead) > limit {
		dead = dead[:limit]
		last := dead[limit-1]
		next = strconv.FormatInt(last.DiedAt.UnixNano(), 10) + "_" + last.OrderID.String()
	}
	entries := make([]Entry, len(dead))
	for i, d := range dead {
		entries[i] = Entry{OrderID: d.OrderID}
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	if err := q.fill(ctx, entries, false); err != nil {
		return nil, nil, "", err
	}
	orders := make([]*order.Order, len(entries))
	for i, e := range entries {
		orders[i] = e.Order
	}
	return dead, orders, next, nil
}

// ReplayDead puts up to limit dead entries back in the queue, oldest
// first, and returns how many it replayed and how many remain dead.
func (q *SpillQueue) ReplayDead(ctx context.Context, limit int) (replayed, remaining int, err error) {
	dead, err := q.Dead(ctx)
	if err != nil {
		return 0, 0, err
	}
	gone := 0
	for i, d := range dead {
		if i == limit {
			break
		}
		err := q.Replay(ctx, d.OrderID)
		if errors.Is(err, order.ErrNotFound) {
			gone++ // replayed by someone else meanwhile
			continue
		}
		if err != nil {
			return replayed, len(dead) - replayed - gone, err
		}
		replayed++
	}
	return replayed, len(dead) - replayed - gone, nil
}

// validStreamID reports whether s looks like a Redis stream id (ms-seq).
func validStreamID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}
