package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Keys of values the middleware stores in the gin context.
const (
	ctxRequestID = "request_id"
	// ctxClient is the name of the authenticated API client or admin.
	ctxClient = "client"
	// ctxAdmin is true when the key is an admin key.
	ctxAdmin = "admin"
	// ctxProblem is the code of the problem answered, if any.
	ctxProblem = "problem"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-ID"

// requestID accepts a sane incoming X-Request-ID (so a caller can trace its
// own id through our logs) or makes one, and echoes it.
func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(HeaderRequestID)
		if !validToken(id, 128) {
			id = uuid.NewString()
		}
		c.Set(ctxRequestID, id)
		c.Header(HeaderRequestID, id)
		c.Next()
	}
}

// validToken reports whether s is 1..max printable ASCII characters without
// spaces: safe to log and to store as a key.
func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	problems *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "txorder", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "http", Name: "problems_total",
			Help: "Problem answers by route and stable problem code (rate_limited, provider_txn_reused, …).",
		}, []string{"route", "code"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.problems} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe logs one access line and records the request metrics.
func observe(logger *slog.Logger, m *httpMetrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		elapsed := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched" // bounded label: never the raw path
		}
		status := c.Writer.Status()
		m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(route, c.Request.Method).Observe(elapsed.Seconds())
		problem := c.GetString(ctxProblem)
		if problem != "" {
			m.problems.WithLabelValues(route, problem).Inc()
		}
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			return // probes would drown the log
		}
		attrs := []slog.Attr{
			slog.String("request_id", c.GetString(ctxRequestID)),
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.Int("bytes", c.Writer.Size()),
		}
		if client := c.GetString(ctxClient); client != "" {
			attrs = append(attrs, slog.String("client", client))
		}
		if problem != "" {
			attrs = append(attrs, slog.String("problem", problem))
		}
		level := slog.LevelInfo
		if len(c.Errors) > 0 {
			attrs = append(attrs, slog.String("error", c.Errors.String()))
		}
		if status >= 500 {
			level = slog.LevelError
		}
		logger.LogAttrs(c.Request.Context(), level, "http request", attrs...)
	}
}

// authenticator checks Authorization: Bearer <key> against the configured
// keys. Keys are compared as SHA-256 digests in constant time, and every
// configured key is compared, so neither the length nor the position of a
// matching key leaks through timing.
type authenticator struct {
	digests [][sha256.Size]byte
	names   []string
	admin   []bool
}

// newAuthenticator accepts the client keys and the admin keys (key → name);
// either may be nil.
func newAuthenticator(clients, admins map[string]string) *authenticator {
	a := &authenticator{}
	add := func(keys map[string]string, admin bool) {
		for key, name := range keys {
			a.digests = append(a.digests, sha256.Sum256([]byte(key)))
			a.names = append(a.names, name)
			a.admin = append(a.admin, admin)
		}
	}
	add(clients, false)
	add(admins, true)
	return a
}

// identify returns the name behind the header's key and whether it is an
// admin key.
func (a *authenticator) identify(header string) (name string, admin, ok bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false, false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := -1
	for i := range a.digests {
		if subtle.ConstantTimeCompare(d[:], a.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false, false
	}
	return a.names[match], a.admin[match], true
}

func (a *authenticator) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		name, admin, ok := a.identify(c.GetHeader("Authorization"))
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="txorder"`)
			abort(c, http.StatusUnauthorized, CodeUnauthorized, "Unauthorized",
				"send Authorization: Bearer <api key>")
			return
		}
		c.Set(ctxClient, name)
		c.Set(ctxAdmin, admin)
		c.Next()
	}
}

// recovery turns a panic into a 500 problem and logs it with the stack
// frame gin gives us, instead of killing the connection silently.
func recovery(logger *slog.Logger) gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		logger.Error("panic in handler", "request_id", c.GetString(ctxRequestID), "panic", err)
		abort(c, http.StatusInternalServerError, CodeInternal, "Internal error", "")
	})
}
