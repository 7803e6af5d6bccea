package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisDo sends commands to the Redis server at addr on one connection (so
// SELECT carries over) and returns the replies as strings: a status or
// integer as its text, a bulk string as its content, a nil reply as
// "(nil)", an array as its elements joined by newlines. An error reply fails
// the call. Readiness probes and cleanup use it.
func redisDo(ctx context.Context, addr string, cmds ...[]string) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1, DisableIdentity: true})
	defer rdb.Close()
	conn := rdb.Conn()
	defer conn.Close()
	replies := make([]string, 0, len(cmds))
	for _, c := range cmds {
		args := make([]any, len(c))
		for i, a := range c {
			args[i] = a
		}
		v, err := conn.Do(ctx, args...).Result()
		switch {
		case errors.Is(err, redis.Nil):
			v = "(nil)"
		case err != nil:
			return replies, fmt.Errorf("redis %s: %w", c[0], err)
		}
		replies = append(replies, flatten(v))
	}
	return replies, nil
}

func flatten(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = flatten(e)
		}
		return strings.Join(parts, "\n")
	case map[any]any: // RESP3 maps (CONFIG GET): key, value pairs
		var parts []string
		for k, e := range v {
			parts = append(parts, flatten(k), flatten(e))
		}
		return strings.Join(parts, "\n")
	case nil:
		return "(nil)"
	default:
		return fmt.Sprint(v)
	}
}
