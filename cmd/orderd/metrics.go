package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/order"
)

// stateCollector reports orders by status and the order cache size at
// scrape time. Both are cheap (an index-only GROUP BY and an SCARD); a
// dependency that is down is simply left out of that scrape.
type stateCollector struct {
	store     *order.Store
	cache     *fallback.OrderCache
	byStatus  *prometheus.Desc
	cacheSize *prometheus.Desc
}

func newStateCollector(store *order.Store, cache *fallback.OrderCache) *stateCollector {
	return &stateCollector{
		store: store, cache: cache,
		byStatus: prometheus.NewDesc("txorder_orders", "Orders in MySQL by status.", []string{"status"}, nil),
		cacheSize: prometheus.NewDesc("txorder_order_cache_size",
			"Orders accepted while MySQL was down, waiting in Redis for a check-back to store them.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byStatus
	ch <- c.cacheSize
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
