// Package fallback is what txorder does when a dependency is down: the
// Redis OrderCache holds orders accepted while MySQL is unreachable, until a
// check-back writes them to MySQL.
package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/internal/group"
	"github.com/txorder/txorder/order"
)

// ErrUnavailable means Redis could not be reached or did not acknowledge
// in time. A write that fails this way may or may not have been applied.
var ErrUnavailable = errors.New("redis unavailable")

// OrderCache keeps full orders in Redis, one key per order and no expiry,
// while MySQL is down. It also remembers recent idempotency keys (with a
// TTL) so that a client retry during a MySQL outage finds its order instead
// of creating a second one.
//
// Keys, under the configured prefix:
//
//	<prefix>cache:order:<id>            JSON of the order (no expiry)
//	<prefix>cache:ids                   set of cached order ids
//	<prefix>idem:<client>:<key>         {"order_id","request_hash"} (TTL)
type OrderCache struct {
	rdb     redis.UniversalClient
	prefix  string
	keyTTL  time.Duration
	timeout time.Duration
	claims  *group.Grouper[claim, claimResult] // nil: one SET NX per claim
}

// claim is one SET NX of ClaimKey; claimResult its answer.
type claim struct {
	key  string
	body []byte
}

type claimResult struct {
	ok  bool
	err error
}

// CacheConfig tunes an OrderCache.
type CacheConfig struct {
	// Prefix starts every key. Default "txorder:".
	Prefix string
	// IdempotencyTTL is how long an idempotency key is remembered in Redis.
	// Default 24h.
	IdempotencyTTL time.Duration
	// Timeout bounds each call. Default 500ms.
	Timeout time.Duration
	// GroupClaims sends the SET NX of claims made while another group of
	// them is in flight as one pipeline, each with its own answer
	// (internal/group; a lone claim is sent at once). Off by default;
	// orderd turns it on with group_commit.enabled.
	GroupClaims bool
	// ClaimGroup bounds a group of claims (defaults as group.Config's).
	ClaimGroup group.Config
}

// NewOrderCache returns an OrderCache on rdb.
func NewOrderCache(rdb redis.UniversalClient, cfg CacheConfig) (*OrderCache, error) {
	if rdb == nil {
		return nil, errors.New("order cache: nil redis client")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "txorder:"
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	c := &OrderCache{rdb: rdb, prefix: cfg.Prefix, keyTTL: cfg.IdempotencyTTL, timeout: cfg.Timeout}
	if cfg.GroupClaims {
		c.claims = group.New(cfg.ClaimGroup, c.setNXGroup)
	}
	return c, nil
}

func (c *OrderCache) orderKey(id uuid.UUID) string { return c.prefix + "cache:order:" + id.String() }
func (c *OrderCache) idsKey() string               { return c.prefix + "cache:ids" }
func (c *OrderCache) idemKey(client, key string) string {
	return c.prefix + "idem:" + client + ":" + key
}

type idemRecord struct {
	OrderID     uuid.UUID `json:"order_id"`
	RequestHash string    `json:"request_hash"`
	ClaimedAt   time.Time `json:"claimed_at"`
}

// Put stores o in one MULTI/EXEC and returns only once Redis acknowledged
// it (with appendfsync always, after the write reached the disk). An error
// means the order must not be counted as accepted. The idempotency key was
// claimed before (ClaimKey).
func (c *OrderCache) Put(ctx context.Context, o *order.Order) error {
	body, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode order %s: %w", o.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err = c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, c.orderKey(o.ID), body, 0)
		p.SAdd(ctx, c.idsKey(), o.ID.String())
		return nil
	})
	return translate(err)
}

// ClaimKey records that (client, key) belongs to rec's order, unless a
// record exists: then it returns that record and false. order.Service
// claims every key before it places the order, so that two requests with
// one key can never make two orders, whichever store each would land in.
// The record lives for the configured idempotency TTL.
func (c *OrderCache) ClaimKey(ctx context.Context, client, key string, rec order.IdempotencyRecord) (order.IdempotencyRecord, bool, error) {
	for range 3 { // a record that expires between SETNX and GET: claim again
		b, _ := json.Marshal(recordOf(rec))
		ok, err := c.setNX(ctx, claim{key: c.idemKey(client, key), body: b})
		if err != nil {
			return order.IdempotencyRecord{}, false, translate(err)
		}
		if ok {
			return rec, true, nil
		}
		existing, err := c.LookupKey(ctx, client, key)
		if err == nil && existing.OrderID == rec.OrderID {
			// Our own claim: an earlier attempt landed and its answer was lost.
			return rec, true, nil
		}
		if !errors.Is(err, order.ErrNotFound) {
			return existing, false, err
		}
	}
	return order.IdempotencyRecord{}, false, fmt.Errorf("%w: claim of idempotency key kept racing its expiry", ErrUnavailable)
}

// setNX sends one claim's SET NX, alone or in a group, within the
// cache's timeout.
func (c *OrderCache) setNX(ctx context.Context, cl claim) (bool, error) {
	if c.claims == nil {
		r := c.setNXGroup(ctx, []claim{cl})[0]
		return r.ok, r.err
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, ok := c.claims.Do(cctx, cl)
	if !ok {
		// The group may still set it: as a lone SET NX whose answer was
		// lost. A retry finds the claim naming this order.
		return false, fmt.Errorf("waiting for a group of key claims: %w", cctx.Err())
	}
	return r.ok, r.err
}

// setNXGroup sends the claims' SET NX commands, one alone or several as
// one pipeline (one round trip), within the cache's timeout, and returns
// each one's answer.
func (c *OrderCache) setNXGroup(ctx context.Context, claims []claim) []claimResult {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := make([]claimResult, len(claims))
	if len(claims) == 1 {
		ok, err := c.rdb.SetNX(ctx, claims[0].key, claims[0].body, c.keyTTL).Result()
		out[0] = claimResult{ok: ok, err: err}
		return out
	}
	cmds := make([]*redis.BoolCmd, len(claims))
	pipe := c.rdb.Pipeline()
	for i, cl := range claims {
		cmds[i] = pipe.SetNX(ctx, cl.key, cl.body, c.keyTTL)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, cmd := range cmds {
		ok, err := cmd.Result()
		out[i] = claimResult{ok: ok, err: err}
	}
	return out
}

// replaceKeyScript swaps the record only if it still names the old order.
var replaceKeyScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cjson.decode(cur)['order_id'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// ReplaceKey gives (client, key) to rec's order if the record still names
// old's order (a stale claim whose order never materialised), and reports
// whether it did.
func (c *OrderCache) ReplaceKey(ctx context.Context, client, key string, old, rec order.IdempotencyRecord) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b, _ := json.Marshal(recordOf(rec))
	n, err := replaceKeyScript.Run(ctx, c.rdb, []string{c.idemKey(client, key)},
		old.OrderID.String(), b, c.keyTTL.Milliseconds()).Int()
	return n == 1, translate(err)
}

// releaseKeyScript deletes the record only if it names the given order.
var releaseKeyScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['order_id'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// ReleaseKey frees (client, key) if it still names orderID: the placement
// was refused and nothing was recorded, so a retry may place it.
func (c *OrderCache) ReleaseKey(ctx context.Context, client, key string, orderID uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return translate(releaseKeyScript.Run(ctx, c.rdb, []string{c.idemKey(client, key)}, orderID.String()).Err())
}

func recordOf(rec order.IdempotencyRecord) idemRecord {
	return idemRecord{OrderID: rec.OrderID, RequestHash: rec.RequestHash, ClaimedAt: rec.ClaimedAt}
}

// Get returns the cached order, order.ErrNotFound when it is not cached, or
// ErrUnavailable.
func (c *OrderCache) Get(ctx context.Context, id uuid.UUID) (*order.Order, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b, err := c.rdb.Get(ctx, c.orderKey(id)).Bytes()
	if err != nil {
		return nil, translate(err)
	}
	var o order.Order
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("decode cached order %s: %w", id, err)
	}
	return &o, nil
}

// LookupKey returns what (client, key) points at, or order.ErrNotFound.
func (c *OrderCache) LookupKey(ctx context.Context, client, key string) (order.IdempotencyRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b, err := c.rdb.Get(ctx, c.idemKey(client, key)).Bytes()
	if err != nil {
		return order.IdempotencyRecord{}, translate(err)
	}
	var rec idemRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return order.IdempotencyRecord{}, fmt.Errorf("decode idempotency record: %w", err)
	}
	return order.IdempotencyRecord{OrderID: rec.OrderID, RequestHash: rec.RequestHash, ClaimedAt: rec.ClaimedAt}, nil
}

// Delete removes a cached order once it is in MySQL. Deleting a missing
// order is not an error.
func (c *OrderCache) Delete(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, c.orderKey(id))
		p.SRem(ctx, c.idsKey(), id.String())
		return nil
	})
	return translate(err)
}

// Size returns how many orders are cached.
func (c *OrderCache) Size(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	n, err := c.rdb.SCard(ctx, c.idsKey()).Result()
	return n, translate(err)
}

// IDs returns up to n cached order ids, in no particular order.
func (c *OrderCache) IDs(ctx context.Context, n int64) ([]uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	raw, err := c.rdb.SRandMemberN(ctx, c.idsKey(), n).Result()
	if err != nil {
		return nil, translate(err)
	}
	ids := make([]uuid.UUID, 0, len(raw))
	for _, s := range raw {
		if id, err := uuid.Parse(s); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// WriteMayHaveLanded reports whether a failed Redis write may still have
// been applied: true unless the connection was refused or the circuit
// breaker held the call back (ErrBreakerOpen: the command never reached
// Redis), or Redis answered that it refused the write: OOM (over
// maxmemory with noeviction; a MULTI is refused when queued, a script at
// its first write) or EXECABORT (the transaction was discarded). A timeout
// or a dropped connection after sending does not say.
func WriteMayHaveLanded(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, order.ErrNotAttempted) {
		return false
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := reply.Error()
		if strings.HasPrefix(msg, "OOM ") || strings.HasPrefix(msg, "EXECABORT ") {
			return false
		}
	}
	return true
}

// translate maps go-redis errors: a miss is order.ErrNotFound; every other
// error (network, timeout, or an error reply such as OOM, READONLY or
// MISCONF) means Redis did not accept the call, which for every caller here
// is "unavailable".
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return order.ErrNotFound
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
