// Package api is the HTTP transport of txorder: the gin router, its
// middleware (request id, access log, metrics, auth, body limit) and the
// handlers. It translates between HTTP and the domain and nothing else.
package api

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed openapi.yaml
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3.1 description served at /openapi.yaml.
func OpenAPIDocument() []byte { return openAPIDocument }

// Check is one dependency reported by /readyz.
type Check struct {
	Name string
	// Required checks must pass for the service to report ready.
	Required bool
	Probe    func(ctx context.Context) error
}

// Config is what NewHandler needs.
type Config struct {
	Orders Orders
	// Payments serves the provider's webhook POST /v1/payments/notify;
	// nil leaves the route out.
	Payments Payments
	// Admins maps admin key → name. Admin keys may read every order
	// (GET /v1/orders/{id}) but place none, and use /v1/admin, whose
	// routes exist only with admin keys and a Spill to show.
	Admins map[string]string
	Spill  Spill
	// Clients maps API key → client name. An order belongs to the client
	// that placed it: another client reading it gets 404.
	Clients map[string]string
	Checks  []Check
	// Ready decides readiness from which checks are up. Default: every
	// Required check is up.
	Ready        func(up map[string]bool) bool
	Registry     *prometheus.Registry
	Logger       *slog.Logger
	MaxBodyBytes int64
	// ProbeTimeout bounds each readiness probe. Default 1s.
	ProbeTimeout time.Duration
	// Limits are the per-client rate limits and the in-flight bound; the
	// zero value limits nothing.
	Limits Limits
}

// NewHandler returns the HTTP handler of the order API.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Orders == nil || cfg.Registry == nil || cfg.Logger == nil {
		return nil, errors.New("api: Orders, Registry and Logger are required")
	}
	if len(cfg.Clients) == 0 {
		return nil, errors.New("api: no API clients configured")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = time.Second
	}
	metrics, err := newHTTPMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	shed, err := newInFlight(cfg.Limits.MaxInFlight, cfg.Registry)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, keys := range []map[string]string{cfg.Clients, cfg.Admins} {
		for _, name := range keys {
			names = append(names, name)
		}
	}
	limits, err := newLimiter(cfg.Limits, names, cfg.Registry)
	if err != nil {
		return nil, err
	}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	r.Use(requestID(), observe(cfg.Logger, metrics), recovery(cfg.Logger), shed.middleware())
	r.NoRoute(func(c *gin.Context) { abort(c, http.StatusNotFound, CodeNotFound, "Not found", "") })
	r.NoMethod(func(c *gin.Context) {
		abort(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "Method not allowed", "")
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "alive"}) })
	r.GET("/readyz", readiness(cfg.Checks, cfg.Ready, cfg.ProbeTimeout, newAuthenticator(nil, cfg.Admins), cfg.Logger))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))
	r.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", openAPIDocument) })

	h := &orderHandlers{orders: cfg.Orders, maxBodyBytes: cfg.MaxBodyBytes}
	v1 := r.Group("/v1", bodyLimit(cfg.MaxBodyBytes), newAuthenticator(cfg.Clients, cfg.Admins).middleware(), limits.middleware())
	v1.POST("/orders", h.create)
	v1.GET("/orders/:id", h.get)
	registerPayments(r, cfg)
	registerAdmin(r, cfg, limits)
	return r, nil
}

// bodyLimit refuses a declared oversized body before reading it, and caps
// what is read from an undeclared (chunked) one.
func bodyLimit(max int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > max {
			abort(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Request body too large", "")
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, max)
		c.Next()
	}
}

type checkResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// readiness probes every dependency concurrently and answers 200 when ready
// says so (default: all required ones are up). Each dependency is listed up
// or down; why one is down (an error that names hosts, ports and
// addresses) is shown only to admin keys, and logged when a dependency
// goes down or comes back, so that the log has it without one line per
// probe.
func readiness(checks []Check, ready func(map[string]bool) bool, timeout time.Duration,
	admins *authenticator, logger *slog.Logger) gin.HandlerFunc {
	if ready == nil {
		ready = func(up map[string]bool) bool {
			for _, ch := range checks {
				if ch.Required && !up[ch.Name] {
					return false
				}
			}
			return true
		}
	}
	// last[i]: 0 not probed yet, 1 up, 2 down.
	last := make([]atomic.Int32, len(checks))
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), timeout)
		defer cancel()
		results := make([]checkResult, len(checks))
		var wg sync.WaitGroup
		for i, ch := range checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := ch.Probe(ctx); err != nil {
					results[i] = checkResult{Status: "down", Error: err.Error()}
					if last[i].Swap(2) != 2 {
						logger.Warn("dependency down", "check", ch.Name, "error", err)
					}
					return
				}
				results[i] = checkResult{Status: "up"}
				if last[i].Swap(1) == 2 {
					logger.Info("dependency up again", "check", ch.Name)
				}
			}()
		}
		wg.Wait()
		_, admin, _ := admins.identify(c.GetHeader("Authorization"))
		byName := make(map[string]checkResult, len(checks))
		up := make(map[string]bool, len(checks))
		for i, ch := range checks {
			if !admin {
				results[i].Error = ""
			}
			byName[ch.Name] = results[i]
			up[ch.Name] = results[i].Status == "up"
		}
		status, word := http.StatusOK, "ready"
		if !ready(up) {
			status, word = http.StatusServiceUnavailable, "not_ready"
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(status, gin.H{"status": word, "checks": byName})
	}
}
