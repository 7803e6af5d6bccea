package listener

import (
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the transaction listener's Prometheus metrics.
type Metrics struct {
	execute       *prometheus.CounterVec
	check         *prometheus.CounterVec
	checkLatency  prometheus.Histogram
	cacheInserted prometheus.Counter
	breakerState  prometheus.Gauge
	// commitAfterFast counts check-back COMMITs for orders a fast commit
	// had already released: each wrote a second copy of the event.
	commitAfterFast prometheus.Counter
	// halfSent and endSent count the placer's requests to the broker: one
	// SEND_MESSAGE per half message tried, and the END_TRANSACTION the
	// client writes (one-way) after every send that got an answer.
	halfSent, endSent prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, for tests that do not scrape).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		execute: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "tx", Name: "execute_total",
			Help: "Local transactions of placements by branch: stored, cached, refused, conflict, failed, not_sent.",
		}, []string{"outcome"}),
		check: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "tx", Name: "check_total",
			Help: "Check-back answers by answer (commit, rollback, unknown) and reason.",
		}, []string{"answer", "reason"}),
		checkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "txorder", Subsystem: "tx", Name: "check_duration_seconds",
			Help:    "Time to answer one check-back.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		cacheInserted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "tx", Name: "cache_inserted_total",
			Help: "Orders written from the Redis cache to MySQL by a check-back.",
		}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "txorder", Subsystem: "tx", Name: "mysql_breaker_state",
			Help: "MySQL circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		commitAfterFast: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "tx", Name: "check_commit_after_fast_total",
			Help: "Check-back COMMITs for orders whose fast commit the broker had already accepted: each delivered the event a second time.",
		}),
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "txorder_rocketmq_requests_total",
		Help: "Requests the placer sent to the broker: send_half (SEND_MESSAGE of a half message) and end_transaction (one-way, after every answered send).",
	}, []string{"request"})
	m.halfSent, m.endSent = requests.WithLabelValues("send_half"), requests.WithLabelValues("end_transaction")
	if reg != nil {
		reg.MustRegister(m.execute, m.check, m.checkLatency, m.cacheInserted, m.breakerState, m.commitAfterFast, requests)
	}
	return m
}

func (m *Metrics) observeCheck(state primitive.LocalTransactionState, reason string, d time.Duration) {
	m.check.WithLabelValues(stateName(state), reason).Inc()
	m.checkLatency.Observe(d.Seconds())
}
