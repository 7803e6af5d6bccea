package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/order"
)

// stateCollector reports orders by status, the order cache size and
// Redis's memory at scrape time. All are cheap (an index-only GROUP BY, an
// SCARD, an INFO memory), each bounded by its store's timeout; a dependency
// that is down is simply left out of that scrape (txorder_redis_up says
// which for Redis).
type stateCollector struct {
	store     *order.Store
	cache     *fallback.OrderCache
	byStatus  *prometheus.Desc
	cacheSize *prometheus.Desc
	redisUp   *prometheus.Desc
	memUsed   *prometheus.Desc
	memMax    *prometheus.Desc
	memPolicy *prometheus.Desc
}

func newStateCollector(store *order.Store, cache *fallback.OrderCache) *stateCollector {
	return &stateCollector{
		store: store, cache: cache,
		byStatus: prometheus.NewDesc("txorder_orders", "Orders in MySQL by status.", []string{"status"}, nil),
		cacheSize: prometheus.NewDesc("txorder_order_cache_size",
			"Orders accepted while MySQL was down, waiting in Redis for a check-back to store them.", nil, nil),
		redisUp: prometheus.NewDesc("txorder_redis_up",
			"1 when Redis answered INFO memory within redis.timeout at this scrape, else 0.", nil, nil),
		memUsed: prometheus.NewDesc("txorder_redis_memory_used_bytes",
			"Redis used_memory (INFO memory).", nil, nil),
		memMax: prometheus.NewDesc("txorder_redis_memory_max_bytes",
			"Redis maxmemory; 0 means no limit. Past it Redis refuses the order cache, spill queue and key claims (noeviction).", nil, nil),
		memPolicy: prometheus.NewDesc("txorder_redis_maxmemory_policy",
			"Redis maxmemory_policy, as a label (value 1); txorder needs noeviction.", []string{"policy"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byStatus
	ch <- c.cacheSize
	ch <- c.redisUp
	ch <- c.memUsed
	ch <- c.memMax
	ch <- c.memPolicy
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if counts, err := c.store.CountByStatus(ctx); err == nil {
		for _, st := range []order.Status{order.StatusPendingPayment, order.StatusPaid, order.StatusClosed} {
			ch <- prometheus.MustNewConstMetric(c.byStatus, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
	}
	if n, err := c.cache.Size(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.cacheSize, prometheus.GaugeValue, float64(n))
	}
	m, err := c.cache.Memory(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.redisUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.redisUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.memUsed, prometheus.GaugeValue, float64(m.Used))
	ch <- prometheus.MustNewConstMetric(c.memMax, prometheus.GaugeValue, float64(m.Max))
	ch <- prometheus.MustNewConstMetric(c.memPolicy, prometheus.GaugeValue, 1, m.Policy)
}

// spillCollector reports the spill queue's depth at scrape time.
type spillCollector struct {
	spill *fallback.SpillQueue
	depth *prometheus.Desc
}

func newSpillCollector(spill *fallback.SpillQueue) *spillCollector {
	return &spillCollector{spill: spill, depth: prometheus.NewDesc("txorder_spill_depth",
		"Orders in the spill queue waiting for RocketMQ (pending) or given up on (dead).", []string{"state"}, nil)}
}

func (c *spillCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth }

func (c *spillCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if pending, dead, err := c.spill.Depth(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(pending), "pending")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(dead), "dead")
	}
}

// redisPoolCollector reports the Redis client's connection pool, so that
// a dependency that hangs can be seen not to pile up connections.
type redisPoolCollector struct {
	rdb      *redis.Client
	conns    *prometheus.Desc
	timeouts *prometheus.Desc
}

func newRedisPoolCollector(rdb *redis.Client) *redisPoolCollector {
	return &redisPoolCollector{rdb: rdb,
		conns: prometheus.NewDesc("txorder_redis_pool_connections",
			"Connections of orderd's Redis client pool: total (open) and idle.", []string{"state"}, nil),
		timeouts: prometheus.NewDesc("txorder_redis_pool_timeouts_total",
			"Calls that waited for a pool connection until their deadline.", nil, nil)}
}

func (c *redisPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.timeouts
}

func (c *redisPoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.rdb.PoolStats()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.TotalConns), "total")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.IdleConns), "idle")
	ch <- prometheus.MustNewConstMetric(c.timeouts, prometheus.CounterValue, float64(st.Timeouts))
}

// groupCommitCollector exports the store's group-commit counters
// (order.Store.GroupStats; docs/design.md §4.1, "Grouped commits").
type groupCommitCollector struct {
	store                                  *order.Store
	transactions, orders, refused, unknown *prometheus.Desc
}

func newGroupCommitCollector(store *order.Store) *groupCommitCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("txorder_group_commit_"+name, help, nil, nil)
	}
	return &groupCommitCollector{store: store,
		transactions: d("transactions_total", "MySQL transactions that wrote placements' orders (a group, or one order with grouping off); orders_total over this is the mean group size."),
		orders:       d("orders_total", "Orders written by those transactions."),
		refused:      d("refused_total", "Groups MySQL refused (a duplicate key, a deadlock, ...): each of their orders was then written alone."),
		unknown:      d("unknown_total", "Groups whose outcome was unknown (connection lost, timeout): every member answered as a lone write that may have committed.")}
}

func (c *groupCommitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.transactions
	ch <- c.orders
	ch <- c.refused
	ch <- c.unknown
}

func (c *groupCommitCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store.GroupStats()
	ch <- prometheus.MustNewConstMetric(c.transactions, prometheus.CounterValue, float64(st.Transactions))
	ch <- prometheus.MustNewConstMetric(c.orders, prometheus.CounterValue, float64(st.Orders))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(c.unknown, prometheus.CounterValue, float64(st.Unknown))
}
