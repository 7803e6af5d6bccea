package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/listener"
)

// deadLetterCollector reports the dead letters waiting for an operator at
// scrape time (one COUNT on a small table, bounded by the store's
// timeout); with MySQL down the metric is left out of that scrape.
type deadLetterCollector struct {
	dead    *listener.DeadLetterStore
	group   string
	pending *prometheus.Desc
}

func newDeadLetterCollector(dead *listener.DeadLetterStore, group string) *deadLetterCollector {
	return &deadLetterCollector{dead: dead, group: group, pending: prometheus.NewDesc("txorder_fulfillment_dead_letters_pending",
		"Dead letters of this consumer group not replayed yet (ordertool dlq list --pending).", nil, nil)}
}

func (c *deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.pending }

func (c *deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := c.dead.Pending(ctx, c.group); err == nil {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(n))
	}
}
