// Package console is orderd's operator console: server-rendered pages
// under /console (html/template, assets embedded in the binary, nothing
// loaded from another site) behind the admin keys. An admin key is
// exchanged for a signed session cookie; every state-changing form carries
// a CSRF token; the Content-Security-Policy allows no inline script.
//
// Pages: Overview (dependencies, breakers, what Redis holds, dead letters,
// refunds, rates; refreshed by a small script), Orders (by id, by
// idempotency key and client, by status with keyset paging, one order's
// timeline), Spill queue (pending and dead, replay with a confirmation),
// Dead letters (fulfillment's, replay with a confirmation) and Refunds
// required. It reads everything through the small interfaces below, which
// orderd fills with the stores it already has.
package console

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// Orders finds one order wherever it is (order.Service).
type Orders interface {
	// Get errors: order.ErrNotFound, order.ErrUnavailable.
	Get(ctx context.Context, id uuid.UUID) (order.Located, error)
	// FindByKey errors: order.ErrNotFound, order.ErrUnavailable.
	FindByKey(ctx context.Context, clientID, key string) (order.Located, error)
}

// OrderRows reads order rows in MySQL (order.Store).
type OrderRows interface {
	// List errors: order.ErrInvalidCursor, order.ErrUnavailable.
	List(ctx context.Context, q order.ListQuery) (order.Page, error)
	// Milestones errors: order.ErrNotFound, order.ErrUnavailable.
	Milestones(ctx context.Context, id uuid.UUID) (order.Milestones, error)
	CountByStatus(ctx context.Context) (map[order.Status]int64, error)
	OldestUnpublishedPaid(ctx context.Context) (time.Time, bool, error)
}

// Spill is the spill queue (fallback.SpillQueue). Every method returns
// fallback.ErrUnavailable when Redis cannot be reached.
type Spill interface {
	// PendingPage errors: fallback.ErrInvalidCursor.
	PendingPage(ctx context.Context, after string, limit int64) ([]fallback.Entry, string, error)
	// DeadPage errors: fallback.ErrInvalidCursor.
	DeadPage(ctx context.Context, after string, limit int) ([]fallback.DeadEntry, []*order.Order, string, error)
	Depth(ctx context.Context) (pending, dead int64, err error)
	// Replay errors: order.ErrNotFound when id is not dead.
	Replay(ctx context.Context, id uuid.UUID) error
	ReplayDead(ctx context.Context, limit int) (replayed, remaining int, err error)
}

// Cache is the order cache (fallback.OrderCache).
type Cache interface {
	Size(ctx context.Context) (int64, error)
}

// DeadLetters are the fulfillment service's dead letters
// (listener.DeadLetters). Errors: order.ErrNotFound, order.ErrUnavailable.
type DeadLetters interface {
	Group() string
	Page(ctx context.Context, pendingOnly bool, afterID int64, limit int) ([]listener.DeadLetter, int64, error)
	Get(ctx context.Context, id int64) (listener.DeadLetter, error)
	CountPending(ctx context.Context) (int64, error)
	// Replay errors also: listener.ErrNotReplayable.
	Replay(ctx context.Context, id int64) (listener.ReplayOutcome, error)
	ReplayPending(ctx context.Context, limit int) ([]listener.ReplayResult, error)
	Progress(ctx context.Context, id uuid.UUID) (listener.Progress, error)
	CountApplied(ctx context.Context) (int64, error)
}

// Payments reads recorded payments (payment.Reader). Errors:
// order.ErrUnavailable.
type Payments interface {
	RefundsRequired(ctx context.Context, beforeID int64, limit int) ([]payment.Refund, error)
	ForOrder(ctx context.Context, id uuid.UUID) ([]payment.Payment, error)
	CountRefundsRequired(ctx context.Context) (int64, error)
}

// FastCommits tells whether the broker accepted the fast COMMIT of an
// order's half message (halfmsg.Committer). It remembers that only as long
// as the half message's coordinates (fast_commit.coordinates_ttl).
type FastCommits interface {
	Committed(ctx context.Context, id uuid.UUID) (bool, error)
}

// Check is one dependency shown up or down (the same probes as /readyz).
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Breaker is one circuit breaker shown with its state ("closed",
// "half-open", "open").
type Breaker struct {
	Name  string
	State func() string
}

// Rate is the sum of some counters of the registry, shown per minute.
// No Counters shows the rate as not available, with Note saying why.
type Rate struct {
	Name     string
	Counters []Counter
	Note     string
}

// Counter is one metric of the Gatherer: the sum of its series, or with
// Labels of those series only that carry every one of these label values.
type Counter struct {
	Metric string
	Labels map[string]string
}

// Config is what New needs. Orders, OrderRows, Spill, Cache, Payments,
// Admins, SessionSecret and Logger are required; DeadLetters may be nil
// (the page then says where to find them).
type Config struct {
	Orders      Orders
	OrderRows   OrderRows
	Spill       Spill
	Cache       Cache
	DeadLetters DeadLetters
	Payments    Payments
	// FastCommits, when set, completes an order's timeline with its fast
	// commit (nil: fast commit disabled).
	FastCommits FastCommits
	Checks      []Check
	Breakers    []Breaker
	Rates       []Rate
	// Gatherer is where Rates are read (orderd's registry).
	Gatherer prometheus.Gatherer

	// Admins maps admin key → admin name.
	Admins map[string]string
	// SessionSecret signs session cookies and CSRF tokens: at least 32
	// bytes, the same on every replica.
	SessionSecret []byte
	// SessionTTL is a session's lifetime. Default 8h.
	SessionTTL time.Duration
	// SecureCookies marks cookies Secure even when the request did not
	// arrive over TLS (TLS ends at a load balancer). A request over TLS
	// always gets Secure cookies.
	SecureCookies bool
	// Revocations shares logouts between replicas; nil keeps them in this
	// process only.
	Revocations Revocations
	// Logins bounds failed logins per client address (defaults: bursts of
	// 10, then one every 10s).
	Logins LoginLimit
	// Registerer gets the console's own metrics (logins by outcome); nil
	// registers none.
	Registerer prometheus.Registerer

	// PageSize is the rows per listing page. Default 50.
	PageSize int
	// ReplayBatch bounds one "replay all" click. Default 500.
	ReplayBatch int
	// Timeout bounds the reads of one page. Default 3s.
	Timeout time.Duration
	Logger  *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Console serves the operator console.
type Console struct {
	cfg      Config
	sessions *sessions
	pages    *pages
	rates    *rateSampler
	limiter  *loginLimiter
	logins   *prometheus.CounterVec
	logger   *slog.Logger
}

// New returns a Console.
func New(cfg Config) (*Console, error) {
	if cfg.Orders == nil || cfg.OrderRows == nil || cfg.Spill == nil || cfg.Cache == nil || cfg.Payments == nil || cfg.Logger == nil {
		return nil, errors.New("console: Orders, OrderRows, Spill, Cache, Payments and Logger are required")
	}
	if len(cfg.Admins) == 0 {
		return nil, errors.New("console: no admin keys")
	}
	if len(cfg.SessionSecret) < 32 {
		return nil, errors.New("console: the session secret must be at least 32 bytes")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	if cfg.ReplayBatch <= 0 {
		cfg.ReplayBatch = 500
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "console", Name: "logins_total",
		Help: "Console login attempts by outcome: ok, wrong_key, limited (refused with 429: too many failed logins from the address)."},
		[]string{"outcome"})
	for _, o := range []string{"ok", "wrong_key", "limited"} {
		logins.WithLabelValues(o) // exported at 0 from the start
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(logins); err != nil {
			return nil, err
		}
	}
	return &Console{
		cfg:      cfg,
		sessions: newSessions(cfg.SessionSecret, cfg.SessionTTL, cfg.Admins, cfg.Revocations, cfg.Now),
		pages:    p,
		rates:    newRateSampler(cfg.Gatherer, cfg.Rates, cfg.Now),
		limiter:  newLoginLimiter(cfg.Logins, cfg.Now),
		logins:   logins,
		logger:   cfg.Logger.With("component", "console"),
	}, nil
}

// Run samples the Rates' counters every 5 seconds until ctx ends, so that
// the overview can show them per minute.
func (c *Console) Run(ctx context.Context) {
	c.rates.run(ctx, 5*time.Second)
}
