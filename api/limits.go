package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Limits bounds what clients may ask of the API. The zero value limits
// nothing.
type Limits struct {
	// Rate is the sustained requests per second of each API client (and
	// each admin) without an override; Burst how many it may send at once
	// above that. Rate 0: clients are not rate limited.
	Rate  float64
	Burst int
	// PerClient overrides Rate and Burst by client (or admin) name.
	PerClient map[string]ClientLimit
	// MaxInFlight bounds the requests being handled at once; beyond it a
	// request is answered 503 at once, before it queues for MySQL, Redis
	// or RocketMQ. Probes (/healthz, /readyz, /metrics, /openapi.yaml) are
	// not counted. 0: unbounded.
	MaxInFlight int
}

// ClientLimit is one client's token bucket: Rate tokens per second, Burst
// at most.
type ClientLimit struct {
	Rate  float64
	Burst int
}

// CodeRateLimited is the problem code of a 429.
const CodeRateLimited = "rate_limited"

// limiter holds one token bucket per known client and admin name, built
// once: names come from the configuration, so the set never grows.
type limiter struct {
	buckets map[string]*rate.Limiter
	limits  map[string]ClientLimit
	now     func() time.Time
	limited *prometheus.CounterVec
}

func newLimiter(l Limits, names []string, reg prometheus.Registerer) (*limiter, error) {
	lim := &limiter{buckets: map[string]*rate.Limiter{}, limits: map[string]ClientLimit{}, now: time.Now,
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "http", Name: "rate_limited_total",
			Help: "Requests refused with 429 because the client exceeded its rate limit, by client.",
		}, []string{"client"}),
	}
	if err := reg.Register(lim.limited); err != nil {
		return nil, err
	}
	for _, name := range names {
		cl := ClientLimit{Rate: l.Rate, Burst: l.Burst}
		if o, ok := l.PerClient[name]; ok {
			cl = o
		}
		if cl.Rate <= 0 {
			continue
		}
		lim.limits[name] = cl
		lim.buckets[name] = rate.NewLimiter(rate.Limit(cl.Rate), max(cl.Burst, 1))
		lim.limited.WithLabelValues(name) // exported at 0 from the start
	}
	return lim, nil
}

// middleware answers 429 with Retry-After when the authenticated client's
// bucket is empty. It runs after authentication.
func (l *limiter) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		name := c.GetString(ctxClient)
		b := l.buckets[name]
		if b == nil {
			c.Next()
			return
		}
		now := l.now()
		r := b.ReserveN(now, 1)
		delay := r.DelayFrom(now)
		if r.OK() && delay == 0 {
			c.Next()
			return
		}
		// Give the token back: a refused request must not make the next
		// one wait longer.
		r.CancelAt(now)
		l.limited.WithLabelValues(name).Inc()
		c.Header("Retry-After", strconv.Itoa(retryAfterSeconds(delay)))
		cl := l.limits[name]
		abort(c, http.StatusTooManyRequests, CodeRateLimited, "Too many requests",
			fmt.Sprintf("client %s may send %g requests per second (bursts of %d); retry after Retry-After seconds with the same Idempotency-Key",
				name, cl.Rate, cl.Burst))
	}
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1: a
// client that waits that long finds a token.
func retryAfterSeconds(d time.Duration) int {
	if d <= 0 || d == rate.InfDuration {
		return 1
	}
	return max(1, int(math.Ceil(d.Seconds())))
}

// inFlight sheds load: with max requests already being handled, the next
// is answered 503 with Retry-After at once instead of waiting in a queue
// for a pool (MySQL connections, Redis, the producer) that is already
// saturated.
type inFlight struct {
	max     int64
	current atomic.Int64
	shed    prometheus.Counter
}

func newInFlight(max int, reg prometheus.Registerer) (*inFlight, error) {
	f := &inFlight{max: int64(max),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "http", Name: "shed_total",
			Help: "Requests refused with 503 because the in-flight bound (limits.max_in_flight) was reached.",
		}),
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "txorder", Subsystem: "http", Name: "in_flight",
		Help: "API requests being handled (probes excluded).",
	}, func() float64 { return float64(f.current.Load()) })
	for _, col := range []prometheus.Collector{f.shed, gauge} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *inFlight) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		switch c.FullPath() {
		case "/healthz", "/readyz", "/metrics", "/openapi.yaml":
			c.Next()
			return
		}
		n := f.current.Add(1)
		defer f.current.Add(-1)
		if f.max > 0 && n > f.max {
			f.shed.Inc()
			c.Header("Retry-After", "1")
			abort(c, http.StatusServiceUnavailable, CodeOverloaded, "Overloaded",
				fmt.Sprintf("orderd is handling %d requests, its limit; nothing was recorded, retry after Retry-After with the same Idempotency-Key", f.max))
			return
		}
		c.Next()
	}
}
