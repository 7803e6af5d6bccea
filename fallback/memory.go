package fallback

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Memory is Redis's memory as INFO memory reports it.
type Memory struct {
	// Used is used_memory, in bytes.
	Used int64
	// Max is maxmemory; 0 means no limit.
	Max int64
	// NotCounted is mem_not_counted_for_evict: AOF and replication
	// buffers, which Redis leaves out when it compares Used with Max.
	NotCounted int64
	// Policy is maxmemory_policy. txorder needs noeviction: any other
	// policy makes Redis delete keys (cached or queued orders, claims)
	// when it is full.
	Policy string
}

// Full reports whether Redis refuses (or is about to refuse) writes that
// need memory: with noeviction, once used memory (less what it does not
// count) exceeds maxmemory, every such write answers OOM and nothing is
// written. Used memory includes the client buffers of the commands being
// processed, so writes fail a little before the figure between commands
// reaches the limit: the last 1 % (at least 64 KiB) counts as full.
func (m Memory) Full() bool {
	if m.Max <= 0 || m.Policy != "noeviction" {
		return false
	}
	margin := max(m.Max/100, 64<<10)
	return m.Used-m.NotCounted+margin >= m.Max
}

// Memory reads INFO memory (one round trip, bounded by the timeout).
func (c *OrderCache) Memory(ctx context.Context) (Memory, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := c.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return Memory{}, translate(err)
	}
	return parseMemory(s)
}

func parseMemory(info string) (Memory, error) {
	var m Memory
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "used_memory":
			dst = &m.Used
		case "maxmemory":
			dst = &m.Max
		case "mem_not_counted_for_evict":
			dst = &m.NotCounted
		case "maxmemory_policy":
			m.Policy = v
			seen[k] = true
			continue
		default:
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("redis INFO memory: %s: %w", k, err)
		}
		*dst = n
		seen[k] = true
	}
	for _, k := range []string{"used_memory", "maxmemory", "maxmemory_policy"} {
		if !seen[k] {
			return Memory{}, fmt.Errorf("redis INFO memory lacks %s", k)
		}
	}
	return m, nil
}

// Ping checks that Redis answers and can take writes: PING (which fails
// while Redis loads its append-only file) and INFO memory in one round
// trip; a Redis that is full (see Memory.Full) is reported with its
// numbers, because every order write would be refused.
func (c *OrderCache) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var info *redis.StringCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Ping(ctx)
		info = p.Info(ctx, "memory")
		return nil
	})
	if err != nil {
		return translate(err)
	}
	m, err := parseMemory(info.Val())
	if err != nil {
		return err
	}
	if m.Full() {
		return fmt.Errorf("%w: redis is full: used %d of maxmemory %d bytes; writes are refused (OOM)", ErrUnavailable, m.Used-m.NotCounted, m.Max)
	}
	return nil
}
