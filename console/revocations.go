package console

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisRevocations keeps logged-out session ids in Redis, each until the
// session would have expired, so that every orderd replica refuses them.
//
// Key, under the configured prefix: <prefix>console:revoked:<session id>.
type RedisRevocations struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
}

// NewRedisRevocations returns revocations in rdb; timeout bounds each call
// (0: 500ms).
func NewRedisRevocations(rdb redis.UniversalClient, prefix string, timeout time.Duration) (*RedisRevocations, error) {
	if rdb == nil {
		return nil, errors.New("console: revocations need a redis client")
	}
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	return &RedisRevocations{rdb: rdb, prefix: prefix, timeout: timeout}, nil
}

func (r *RedisRevocations) key(id string) string { return r.prefix + "console:revoked:" + id }

// Revoke implements Revocations.
func (r *RedisRevocations) Revoke(ctx context.Context, id string, until time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.rdb.SetArgs(ctx, r.key(id), "1", redis.SetArgs{ExpireAt: until}).Err()
}

// Revoked implements Revocations.
func (r *RedisRevocations) Revoked(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	n, err := r.rdb.Exists(ctx, r.key(id)).Result()
	return n > 0, err
}
