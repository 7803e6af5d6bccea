package order

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/txorder/txorder/internal/rounds"
)

// ExpireIdempotencyKeys deletes up to limit idempotency keys created before
// before, oldest first, and returns how many it deleted. Orders are not
// touched: a key only lets a retry find its order, and the order keeps its
// owner in orders.client_id.
//
// The keys are read with FOR UPDATE SKIP LOCKED in one READ COMMITTED
// transaction, like CloseExpired: several replicas sweeping at once never
// wait for each other or delete a key twice, and no gap lock holds up the
// placements that insert new keys meanwhile. A placement that conflicts on
// a key being deleted waits for the row lock and then inserts: the key had
// expired. It runs under the caller's deadline.
func (s *Store) ExpireIdempotencyKeys(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, translate(err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT client_id, idem_key FROM idempotency_keys FORCE INDEX (idx_idempotency_keys_created)
		WHERE created_at < ? ORDER BY created_at LIMIT ? FOR UPDATE SKIP LOCKED`, before.UTC(), limit)
	if err != nil {
		return 0, translate(err)
	}
	type key struct{ client, key string }
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.client, &k.key); err != nil {
			rows.Close()
			return 0, translate(err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, translate(err)
	}
	// One DELETE per key, by its whole primary key: a DELETE … IN (…) of
	// the batch may be run as an index scan (MariaDB picks one when the
	// list covers most of the table), and a scanning DELETE waits on every
	// row another transaction holds, matching or not — measured: it hung
	// on the row the SKIP LOCKED read had skipped.
	n := 0
	for _, k := range keys {
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE client_id = ? AND idem_key = ?`, k.client, k.key)
		if err != nil {
			return 0, translate(err)
		}
		d, err := res.RowsAffected()
		if err != nil {
			return 0, translate(err)
		}
		n += int(d)
	}
	if err := tx.Commit(); err != nil {
		return 0, translate(err)
	}
	return n, nil
}

// KeyExpiryConfig tunes a KeyExpirer.
type KeyExpiryConfig struct {
	// TTL: keys older than this are deleted. It is redis.idempotency_ttl,
	// so MySQL forgets a key when Redis does. Required.
	TTL time.Duration
	// Interval between rounds. Default 1m.
	Interval time.Duration
	// Batch bounds the keys deleted per transaction; a full batch is
	// followed at once by the next. Default 500.
	Batch int
	// Timeout bounds one batch. Default 30s.
	Timeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// KeyExpirer deletes idempotency keys older than their TTL from MySQL, so
// that idempotency_keys does not grow without bound. Every replica may run
// one (ExpireIdempotencyKeys skips rows another has locked).
type KeyExpirer struct {
	store   *Store
	cfg     KeyExpiryConfig
	logger  *slog.Logger
	expired atomic.Int64
}

// NewKeyExpirer returns a KeyExpirer on store.
func NewKeyExpirer(store *Store, logger *slog.Logger, cfg KeyExpiryConfig) (*KeyExpirer, error) {
	if store == nil || logger == nil {
		return nil, errors.New("key expirer: store and logger are required")
	}
	if cfg.TTL <= 0 {
		return nil, errors.New("key expirer: TTL must be positive")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &KeyExpirer{store: store, cfg: cfg, logger: logger.With("component", "key_expirer")}, nil
}

// Expired returns how many keys this expirer deleted since it started.
func (e *KeyExpirer) Expired() int64 { return e.expired.Load() }

// Run expires keys every Interval until ctx is done; a full batch is
// followed at once by the next.
func (e *KeyExpirer) Run(ctx context.Context) {
	rounds.Run(ctx, e.cfg.Interval, e.cfg.Interval, func(ctx context.Context) bool {
		n, err := e.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			e.logger.Warn("idempotency key expiry failed", "error", err)
		}
		return err == nil && n >= e.cfg.Batch
	})
}

// RunOnce deletes one batch of expired keys and returns how many.
func (e *KeyExpirer) RunOnce(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	n, err := e.store.ExpireIdempotencyKeys(ctx, e.cfg.Now().Add(-e.cfg.TTL), e.cfg.Batch)
	e.expired.Add(int64(n))
	if n > 0 {
		e.logger.Debug("idempotency keys expired", "count", n, "ttl", e.cfg.TTL.String())
	}
	return n, err
}
