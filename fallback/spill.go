package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/order"
)

// SpillQueue holds orders whose half message could not be sent (RocketMQ
// or its NameServer unreachable) in a Redis Stream, until the Drainer
// places them. An order stays in Redis until it is placed; an entry that
// keeps failing is marked dead, kept, and can be replayed.
//
// Keys, under the configured prefix:
//
//	<prefix>spill:stream          stream of {order_id}, consumer group "drainer"
//	<prefix>spill:order:<id>      JSON of the queued order (until placed; kept when dead)
//	<prefix>spill:attempts        hash order id → placement attempts
//	<prefix>spill:dead            hash order id → DeadEntry JSON
//	<prefix>spill:errors          hash order id → last placement error (pending entries)
type SpillQueue struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
}

// DrainGroup is the stream's consumer group.
const DrainGroup = "drainer"

// NewSpillQueue returns a SpillQueue on rdb; cfg is shared with the
// OrderCache (prefix, idempotency TTL, timeout).
func NewSpillQueue(rdb redis.UniversalClient, cfg CacheConfig) (*SpillQueue, error) {
	c, err := NewOrderCache(rdb, cfg) // same defaults
	if err != nil {
		return nil, err
	}
	return &SpillQueue{rdb: rdb, prefix: c.prefix, timeout: c.timeout}, nil
}

func (q *SpillQueue) streamKey() string            { return q.prefix + "spill:stream" }
func (q *SpillQueue) orderKey(id uuid.UUID) string { return q.prefix + "spill:order:" + id.String() }
func (q *SpillQueue) attemptsKey() string          { return q.prefix + "spill:attempts" }
func (q *SpillQueue) deadKey() string              { return q.prefix + "spill:dead" }
func (q *SpillQueue) errorsKey() string            { return q.prefix + "spill:errors" }

// appendScript stores the order and adds a stream entry only if the order
// is not queued yet: one atomic step, so a retried append never makes a
// second entry.
var appendScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('XADD', KEYS[2], '*', 'order_id', ARGV[2])
  return 1
end
return 0`)

// Append queues o. Appending an order that is already queued does nothing.
// It returns only once Redis acknowledged the write; an error means the
// order must not be counted as accepted.
func (q *SpillQueue) Append(ctx context.Context, o *order.Order) error {
	body, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode order %s: %w", o.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	err = appendScript.Run(ctx, q.rdb, []string{q.orderKey(o.ID), q.streamKey()}, body, o.ID.String()).Err()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return translate(err)
}

// Get returns a queued (or dead) order, or order.ErrNotFound.
func (q *SpillQueue) Get(ctx context.Context, id uuid.UUID) (*order.Order, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	b, err := q.rdb.Get(ctx, q.orderKey(id)).Bytes()
	if err != nil {
		return nil, translate(err)
	}
	var o order.Order
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("decode spilled order %s: %w", id, err)
	}
	return &o, nil
}

// ensureGroup creates the stream and its consumer group if needed.
func (q *SpillQueue) ensureGroup(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.streamKey(), DrainGroup, "0").Err()
	if err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
		return translate(err)
	}
	return nil
}

// DeadEntry is an order the drainer gave up on.
type DeadEntry struct {
	OrderID   uuid.UUID `json:"order_id"`
	Attempts  int64     `json:"attempts"`
	LastError string    `json:"last_error"`
	DiedAt    time.Time `json:"died_at"`
}

// Dead lists the dead entries, oldest first.
func (q *SpillQueue) Dead(ctx context.Context) ([]DeadEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	all, err := q.rdb.HGetAll(ctx, q.deadKey()).Result()
	if err != nil {
		return nil, translate(err)
	}
	out := make([]DeadEntry, 0, len(all))
	for _, v := range all {
		var d DeadEntry
		if json.Unmarshal([]byte(v), &d) == nil {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DiedAt.Before(out[j].DiedAt) })
	return out, nil
}

// Pending lists the ids of orders waiting in the stream (not dead).
func (q *SpillQueue) Pending(ctx context.Context, limit int64) ([]uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	msgs, err := q.rdb.XRangeN(ctx, q.streamKey(), "-", "+", limit).Result()
	if err != nil {
		return nil, translate(err)
	}
	out := make([]uuid.UUID, 0, len(msgs))
	for _, m := range msgs {
		if id, err := uuid.Parse(fmt.Sprint(m.Values["order_id"])); err == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

// Depth returns how many orders wait in the stream and how many are dead.
func (q *SpillQueue) Depth(ctx context.Context) (pending, dead int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	var xlen, hlen *redis.IntCmd
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		xlen = p.XLen(ctx, q.streamKey())
		hlen = p.HLen(ctx, q.deadKey())
		return nil
	})
	if err != nil {
		return 0, 0, translate(err)
	}
	return xlen.Val(), hlen.Val(), nil
}

// Replay moves a dead entry back into the stream with a fresh attempt
// count. It returns order.ErrNotFound when id is not dead.
func (q *SpillQueue) Replay(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	n, err := replayScript.Run(ctx, q.rdb, []string{q.deadKey(), q.streamKey(), q.attemptsKey(), q.orderKey(id), q.errorsKey()},
		id.String()).Int()
	if err != nil {
		return translate(err)
	}
	if n == 0 {
		return order.ErrNotFound
	}
	return nil
}

var replayScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'order_id', ARGV[1])
return 1`)

// done removes a placed order: stream entry acknowledged and deleted,
// order and attempt count gone.
func (q *SpillQueue) done(ctx context.Context, entryID string, id uuid.UUID) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, q.streamKey(), DrainGroup, entryID)
		p.XDel(ctx, q.streamKey(), entryID)
		p.Del(ctx, q.orderKey(id))
		p.HDel(ctx, q.attemptsKey(), id.String())
		p.HDel(ctx, q.errorsKey(), id.String())
		return nil
	})
	return translate(err)
}

// noteError records why the last placement of a pending entry failed, for
// operators (SpillQueue.PendingPage). Best effort: the attempt count is
// what the drainer decides by.
func (q *SpillQueue) noteError(ctx context.Context, id uuid.UUID, cause error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	_ = q.rdb.HSet(ctx, q.errorsKey(), id.String(), cause.Error()).Err()
}

// bury marks an entry dead: out of the stream, kept with its order.
func (q *SpillQueue) bury(ctx context.Context, entryID string, d DeadEntry) error {
	b, _ := json.Marshal(d)
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, q.deadKey(), d.OrderID.String(), b)
		p.XAck(ctx, q.streamKey(), DrainGroup, entryID)
		p.XDel(ctx, q.streamKey(), entryID)
		p.HDel(ctx, q.attemptsKey(), d.OrderID.String())
		p.HDel(ctx, q.errorsKey(), d.OrderID.String())
		return nil
	})
	return translate(err)
}
