package halfmsg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound: no coordinates are recorded for the order (never recorded,
// expired, or lost with Redis).
var ErrNotFound = errors.New("halfmsg: no coordinates recorded")

// StoreConfig tunes a Store.
type StoreConfig struct {
	// Prefix starts every key. Default "txorder:".
	Prefix string
	// TTL is how long coordinates are kept: the payment window plus the
	// time a late payment can still win (the closer's grace) and a margin.
	// Required.
	TTL time.Duration
	// Timeout bounds each call. Default 500ms.
	Timeout time.Duration
}

// Store keeps Coordinates in Redis, where every orderd replica finds
// them, and remembers which orders a fast COMMIT released.
//
// Keys, under the configured prefix, all with the TTL:
//
//	<prefix>halfmsg:<order id>        the coordinates at placement
//	<prefix>halfmsg:live:<order id>   queue and commit-log offset of the copy the last check-back named
//	<prefix>halfmsg:ended:<order id>  "commit" once a fast COMMIT was accepted
//
// Every check-back moves the half message: the broker re-puts a copy and
// names it, and only an END_TRANSACTION for that copy ends the transaction
// (rocketmq-all-4.9.4 TransactionalMessageServiceImpl.check, lines
// 151-230: the op message marks the queue offset it names). So Get returns
// the live copy's offsets when a check-back recorded them. Every write is a
// plain SET with a TTL, pipelined (a Lua compare-and-set halved the moves
// written per second, measured by BenchmarkMoved); the last move written
// wins, and moves for one order come a check interval apart.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	ttl     time.Duration
	timeout time.Duration
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient, cfg StoreConfig) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("halfmsg: nil redis client")
	}
	if cfg.TTL <= 0 {
		return nil, errors.New("halfmsg: store needs a TTL")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "txorder:"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	return &Store{rdb: rdb, prefix: cfg.Prefix, ttl: cfg.TTL, timeout: cfg.Timeout}, nil
}

func (s *Store) key(id uuid.UUID) string      { return s.prefix + "halfmsg:" + id.String() }
func (s *Store) endedKey(id uuid.UUID) string { return s.prefix + "halfmsg:ended:" + id.String() }

// Record is one write: a placement's coordinates, or (Moved) the copy a
// check-back named, of which only the offsets are used.
type Record struct {
	OrderID     uuid.UUID
	Coordinates Coordinates
	Moved       bool
}

func (s *Store) liveKey(id uuid.UUID) string { return s.prefix + "halfmsg:live:" + id.String() }

// Put writes records in one pipelined round trip.
func (s *Store) Put(ctx context.Context, records []Record) error {
	if len(records) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	for _, r := range records {
		if r.Moved {
			pipe.Set(ctx, s.liveKey(r.OrderID), r.Coordinates.encodeOffsets(), s.ttl)
			continue
		}
		pipe.Set(ctx, s.key(r.OrderID), r.Coordinates.encode(), s.ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("halfmsg: record %d coordinates: %w", len(records), err)
	}
	return nil
}

// Get returns the coordinates of the order's half message, or
// ErrNotFound.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (Coordinates, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	vs, err := s.rdb.MGet(ctx, s.key(id), s.liveKey(id)).Result()
	if err != nil {
		return Coordinates{}, fmt.Errorf("halfmsg: read coordinates: %w", err)
	}
	placed, ok := vs[0].(string)
	if !ok {
		return Coordinates{}, ErrNotFound
	}
	c, err := decodeCoordinates(placed)
	if err != nil {
		return c, err
	}
	if live, ok := vs[1].(string); ok {
		if err := c.decodeOffsets(live); err != nil {
			return c, err
		}
	}
	return c, c.validate()
}

// Delete forgets the order's coordinates.
func (s *Store) Delete(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.rdb.Del(ctx, s.key(id), s.liveKey(id)).Err()
}

// MarkCommitted records that a fast COMMIT of the order's half message was
// accepted by the broker.
func (s *Store) MarkCommitted(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.rdb.Set(ctx, s.endedKey(id), "commit", s.ttl).Err()
}

// Committed reports whether a fast COMMIT of the order's half message was
// accepted.
func (s *Store) Committed(ctx context.Context, id uuid.UUID) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n, err := s.rdb.Exists(ctx, s.endedKey(id)).Result()
	return n == 1, err
}
