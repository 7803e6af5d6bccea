// Command orderd is the txorder order service: the HTTP API, and (as the
// later parts land) the transactional producer, the spill-queue drainer and
// the reconciler. It only wires dependencies; behaviour lives in packages.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/gin-gonic/gin"
	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/console"
	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/halfmsg"
	"github.com/txorder/txorder/internal/daemon"
	"github.com/txorder/txorder/internal/group"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/mqlog"
	"github.com/txorder/txorder/internal/nsresolve"
	"github.com/txorder/txorder/internal/roundtrip"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

func main() {
	path, code, ok := daemon.ConfigFlag("orderd", "configs/orderd.yaml", `orderd serves the txorder order API. Configuration comes from the YAML file
and TXORDER_* environment variables (see configs/orderd.yaml); secrets only
from the environment or *_file settings.`, os.Args[1:], os.Stderr)
	if !ok {
		os.Exit(code)
	}
	cfg, err := configs.LoadOrderd(path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orderd:", err)
		os.Exit(2)
	}
	logger := cfg.Log.Logger(os.Stderr)
	os.Exit(daemon.Run("orderd", NewMain(cfg, logger), logger))
}

// interpolated turns on client-side parameter interpolation: without it
// every query with arguments is a prepare, an execute and a close (three
// packets, two round trips); a placement's six statements then cost eleven
// round trips instead of six (measured: see docs/performance.md). Safe with
// the utf8mb4 connection charset the driver uses by default.
func interpolated(dsn string) (string, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", err
	}
	c.InterpolateParams = true
	// The placement's transaction goes as one multi-statement query
	// (order.StoreConfig.OneRoundTrip). Every query orderd sends is a
	// constant with placeholders, which the driver escapes.
	c.MultiStatements = true
	return c.FormatDSN(), nil
}

// Main is orderd as a value: tests build one with a config pointing at their
// own MariaDB and Redis, Open it on 127.0.0.1:0 and Close it.
type Main struct {
	Config configs.Orderd
	Logger *slog.Logger

	db           *sql.DB
	rdb          *redis.Client
	redisBreaker *fallback.Breaker
	ns           *nsresolve.Resolver
	producer     rocketmq.TransactionProducer
	sender       *halfmsg.Sender // nil unless rocketmq.direct_send
	plain        rocketmq.Producer
	registry     *prometheus.Registry
	fast         *fastCommit
	srv          *http.Server
	api          http.Handler // the router srv serves, without the drain wrapper
	ln           net.Listener
	pprof        *pprofServer // http.pprof_addr; nil: off
	served       chan error
	// draining is set when Close begins: /readyz answers 503 from then on
	// while the listener still serves (http.drain_delay).
	draining atomic.Bool

	stopBackground context.CancelFunc
	background     sync.WaitGroup

	// afterDrainPlace is a test hook: the drainer calls it between placing
	// a spilled order and acknowledging its entry.
	afterDrainPlace func(id uuid.UUID)
	// lookupHost is a test hook: how NameServer names are resolved
	// (default: DNS).
	lookupHost nsresolve.LookupFunc
}

// NewMain returns an unopened Main.
func NewMain(cfg configs.Orderd, logger *slog.Logger) *Main {
	return &Main{Config: cfg, Logger: logger}
}

// Open connects to the dependencies, migrates the schema when configured,
// and starts serving HTTP. It returns once the listener accepts.
func (m *Main) Open(ctx context.Context) error {
	cfg := m.Config
	// gin's debug mode prints every route at start-up; orderd logs its own.
	// (gin keeps the mode in a package variable; set it before building.)
	gin.SetMode(gin.ReleaseMode)
	clients, err := cfg.Auth.Clients()
	if err != nil {
		return err
	}
	dsn, err := interpolated(cfg.MySQL.DSN())
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	myCfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	connector, err := mysql.NewConnector(myCfg)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	// Every MySQL and Redis request is counted (txorder_mysql_requests_total,
	// txorder_redis_requests_total): round trips per placement is what
	// ordertool bench reports beside throughput.
	m.registry = prometheus.NewRegistry()
	requests := roundtrip.New(m.registry)
	m.db = sql.OpenDB(requests.Connector(connector))
	m.db.SetMaxOpenConns(cfg.MySQL.MaxOpenConns)
	m.db.SetMaxIdleConns(cfg.MySQL.MaxIdleConns)
	m.db.SetConnMaxLifetime(cfg.MySQL.ConnMaxLife)
	if cfg.MySQL.MigrateOnStart {
		if err := m.migrate(ctx); err != nil {
			return err
		}
	}
	m.rdb = redis.NewClient(&redis.Options{
		Addr: cfg.Redis.Addr, Password: cfg.Redis.Password, DB: cfg.Redis.DB,
		DialTimeout: cfg.Redis.Timeout, ReadTimeout: cfg.Redis.Timeout, WriteTimeout: cfg.Redis.Timeout,
		// One attempt per call: go-redis retries a command whose answer was
		// lost (EOF) after Redis applied it, and a retry that is then
		// refused would report "never reached Redis" for a write that
		// landed (fallback.WriteMayHaveLanded); a retried SET NX would find
		// its own claim.
		MaxRetries: -1,
	})
	m.rdb.AddHook(requests.RedisHook())

	// The state view answers check-backs of pending orders from memory
	// (order.Store.PendingState); it is refreshed by startBackground.
	store, err := order.NewStore(m.db, order.StoreConfig{Timeout: cfg.MySQL.Timeout,
		StateView: order.StateViewConfig{Enabled: true}, OneRoundTrip: true,
		GroupCommit: order.GroupCommitConfig{Enabled: cfg.GroupCommit.Enabled,
			Window: cfg.GroupCommit.Window, MaxBatch: cfg.GroupCommit.MaxBatch}})
	if err != nil {
		return err
	}
	// group_commit also pipelines the idempotency claims of concurrent
	// placements (one SET NX round trip for a group, each its own answer).
	cache, err := fallback.NewOrderCache(m.rdb, fallback.CacheConfig{
		Prefix: cfg.Redis.KeyPrefix, IdempotencyTTL: cfg.Redis.IdempotencyTTL, Timeout: cfg.Redis.Timeout,
		GroupClaims: cfg.GroupCommit.Enabled,
		ClaimGroup:  group.Config{Window: cfg.GroupCommit.Window, MaxBatch: cfg.GroupCommit.MaxBatch},
	})
	if err != nil {
		return err
	}
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStateCollector(store, cache), newGroupCommitCollector(store),
		// Pool sizes: a dependency that hangs must not pile up connections.
		collectors.NewDBStatsCollector(m.db, "orderd"), newRedisPoolCollector(m.rdb))
	// Every Redis call goes through the breaker: a Redis that hangs is
	// bypassed as fast as one that refuses (startBackground runs its probe).
	m.redisBreaker, err = fallback.NewBreaker(m.Logger, m.registry, fallback.BreakerConfig{
		Failures: cfg.Redis.BreakerFailures, OpenFor: cfg.Redis.BreakerOpenFor, Timeout: cfg.Redis.Timeout,
	})
	if err != nil {
		return err
	}
	m.rdb.AddHook(m.redisBreaker)
	if err := m.resolveNameServers(); err != nil {
		return err
	}
	if m.fast, err = newFastCommit(cfg, m.rdb, m.ns.Resolve, m.registry, m.Logger); err != nil {
		return err
	}

	txl, err := listener.NewTransaction(store, cache, listener.NewMetrics(m.registry), m.Logger, listener.TransactionConfig{
		ExecuteTimeout:  cfg.Transaction.ExecuteTimeout,
		CheckTimeout:    cfg.Transaction.CheckTimeout,
		BreakerFailures: cfg.Transaction.BreakerFailures,
		BreakerOpenFor:  cfg.Transaction.BreakerOpenFor,
		FastCommits:     m.fast.commits(),
		HalfMessages:    m.fast.moves(),
	})
	if err != nil {
		return err
	}
	// The transactional producer has its own group and instance name: the
	// client shares one instance per client id, and a consumer sharing it
	// would receive (and drop) this producer's check-backs.
	mqlog.Install(m.Logger)
	m.producer, err = rocketmq.NewTransactionProducer(txl,
		producer.WithNsResolver(m.ns),
		producer.WithGroupName(cfg.RocketMQ.ProducerGroup),
		producer.WithInstanceName(cfg.RocketMQ.InstanceName),
		producer.WithSendMsgTimeout(cfg.RocketMQ.SendTimeout),
		producer.WithRetry(cfg.RocketMQ.SendRetries),
	)
	if err != nil {
		return fmt.Errorf("rocketmq producer: %w", err)
	}
	if err := m.producer.Start(); err != nil {
		m.producer = nil
		return fmt.Errorf("start rocketmq producer: %w", err)
	}
	placer, err := listener.NewPlacer(m.producer, txl, cfg.RocketMQ.Topic, cfg.RocketMQ.SendTimeout, m.fast.halves())
	if err != nil {
		return err
	}
	if cfg.RocketMQ.DirectSend {
		m.sender, err = halfmsg.NewSender(txl, halfmsg.SenderConfig{NameServers: m.ns.Resolve,
			Topic: cfg.RocketMQ.Topic, ProducerGroup: cfg.RocketMQ.ProducerGroup, Retries: cfg.RocketMQ.SendRetries})
		if err != nil {
			return err
		}
		placer.SendThrough(m.sender)
	}
	spill, err := fallback.NewSpillQueue(m.rdb, fallback.CacheConfig{
		Prefix: cfg.Redis.KeyPrefix, IdempotencyTTL: cfg.Redis.IdempotencyTTL, Timeout: cfg.Redis.Timeout,
	})
	if err != nil {
		return err
	}
	// While the RocketMQ breaker is not closed placements spill at once and
	// a warm-up half message (rolled back at once) probes in the
	// background: no placement waits on a broker known to be broken.
	spilling, err := fallback.NewSpillingPlacer(placer, spill, m.Logger, fallback.SpillConfig{
		BreakerFailures: cfg.Spill.BreakerFailures, BreakerOpenFor: cfg.Spill.BreakerOpenFor,
		Probe: placer.Probe, ProbeTimeout: cfg.RocketMQ.SendTimeout,
	})
	if err != nil {
		return err
	}
	svc, err := order.NewService(store, spilling, order.ServiceConfig{
		PaymentWindow: cfg.Order.PaymentWindow, Cache: cache, Queue: spill,
	})
	if err != nil {
		return err
	}
	if err := m.startBackground(store, cache, spill, txl, placer, spilling); err != nil {
		return err
	}
	m.registry.MustRegister(newSpillCollector(spill))

	// The payment webhook is served only with a secret to verify it by;
	// production mode refuses to start without one (configs).
	var payments api.Payments // never a typed nil: nil means "no route"
	if cfg.Payment.WebhookSecret != "" {
		ps, err := payment.NewService(store, m.Logger, payment.Config{
			WebhookSecret: cfg.Payment.WebhookSecret,
			Tolerance:     cfg.Payment.Tolerance,
			Timeout:       cfg.MySQL.Timeout,
		})
		if err != nil {
			return err
		}
		payments = m.fast.payments(ps)
	} else {
		m.Logger.Warn("payment webhook disabled: set TXORDER_PAYMENT__WEBHOOK_SECRET")
	}
	admins, err := cfg.Auth.Admins()
	if err != nil {
		return err
	}
	// The dependencies, as /readyz and the console's overview show them.
	checks := []api.Check{
		{Name: "mysql", Probe: store.Ping},
		{Name: "redis", Probe: cache.Ping},
		{Name: "rocketmq", Probe: m.ns.DialAny},
	}
	consoleChecks := make([]console.Check, len(checks))
	for i, ch := range checks {
		consoleChecks[i] = console.Check{Name: ch.Name, Probe: ch.Probe}
	}
	cons, err := m.newConsole(admins, svc, store, cache, spill, spilling, txl, consoleChecks)
	if err != nil {
		return err
	}
	var mounted api.Mounter // never a typed nil: nil means "no console"
	if cons != nil {
		mounted = cons
	}

	handler, err := api.NewHandler(api.Config{
		Orders:       svc,
		Payments:     payments,
		Clients:      clients,
		Admins:       admins,
		Spill:        spill,
		Registry:     m.registry,
		Logger:       m.Logger,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		Limits:       apiLimits(cfg.Limits),
		Console:      mounted,
		Checks: append([]api.Check{
			// Down from the moment shutdown begins, while requests are still
			// served: a load balancer stops sending before the listener closes.
			{Name: "serving", Probe: func(context.Context) error {
				if m.draining.Load() {
					return errShuttingDown
				}
				return nil
			}},
		}, checks...),
		// An order is accepted durably when MySQL or Redis can hold it
		// (cache) and RocketMQ or Redis can take its message (spill).
		Ready: func(up map[string]bool) bool {
			return up["serving"] && (up["mysql"] || up["redis"]) && (up["rocketmq"] || up["redis"])
		},
	})
	if err != nil {
		return err
	}

	m.ln, err = net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTP.Addr, err)
	}
	m.api = handler
	m.srv = &http.Server{
		Handler:           m.closeWhileDraining(handler),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.srv.Serve(m.ln) }()
	if cfg.HTTP.PprofAddr != "" {
		if m.pprof, err = startPprof(cfg.HTTP.PprofAddr, m.Logger); err != nil {
			return err
		}
	}
	return nil
}

// Addr is the address the API listens on (useful with port 0).
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

var errShuttingDown = errors.New("shutting down")

// Close shuts down in dependency order: report not ready and keep serving
// for http.drain_delay (load balancers take the replica out of rotation),
// stop accepting and drain in-flight requests (bounded by
// http.shutdown_timeout), stop the background jobs, then the producers
// (their half messages' check-backs go to the other replicas), then close
// the pools. It is safe to call on a partly opened Main.
func (m *Main) Close() error {
	var errs []error
	if m.pprof != nil {
		m.pprof.close()
		m.pprof = nil
	}
	if m.srv != nil {
		m.drain()
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.HTTP.ShutdownTimeout)
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		cancel()
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("http serve: %w", err))
		}
		m.srv = nil
	}
	if m.stopBackground != nil {
		m.stopBackground()
		m.background.Wait()
		m.stopBackground = nil
	}
	if m.fast != nil {
		m.fast.close()
		m.fast = nil
	}
	// After the HTTP drain no placement is in flight; the producer goes
	// next (check-backs for its pending half messages will reach another
	// replica, or this one after a restart).
	if m.plain != nil {
		if err := m.plain.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("reconciler producer shutdown: %w", err))
		}
		m.plain = nil
	}
	if m.sender != nil {
		m.sender.Close()
		m.sender = nil
	}
	if m.producer != nil {
		if err := m.producer.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("rocketmq producer shutdown: %w", err))
		}
		m.producer = nil
	}
	if m.rdb != nil {
		errs = append(errs, m.rdb.Close())
		m.rdb = nil
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
		m.db = nil
	}
	return errors.Join(errs...)
}

// drain turns readiness down and keeps serving for http.drain_delay.
func (m *Main) drain() {
	if m.draining.Swap(true) {
		return
	}
	if d := m.Config.HTTP.DrainDelay; d > 0 {
		m.Logger.Info("draining: /readyz answers 503; the listener closes after the drain delay", "drain_delay", d)
		time.Sleep(d)
	}
}

// closeWhileDraining answers "Connection: close" while draining, so each
// connection still used closes after its next answer and its client
// reconnects (through its balancer, to a ready replica). Idle connections
// are left alone until the listener closes: closing them at once
// (SetKeepAlivesEnabled(false)) races with a request a client is sending on
// one, which then fails without an answer; after the drain delay no
// balancer that polls /readyz sends on them any more.
func (m *Main) closeWhileDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// startBackground starts what runs beside the API: the cache sweeper, the
// spill drainer, the publish tracker, the reconciler and the deadline
// closer. Close stops them after the HTTP drain and before the producer.
func (m *Main) startBackground(store *order.Store, cache *fallback.OrderCache, spill *fallback.SpillQueue,
	txl *listener.Transaction, placer *listener.Placer, spilling *fallback.SpillingPlacer) error {
	cfg := m.Config
	drainer, err := fallback.NewDrainer(spill, placer, store, m.registry, m.Logger, fallback.DrainerConfig{
		Consumer: cfg.RocketMQ.InstanceName + "-" + uuid.NewString()[:8],
		// Several placements at once: each waits on its own MySQL commit,
		// which group commit shares (drain 218/s one at a time, measured).
		Batch: 128, Concurrency: 32,
		MaxAttempts: cfg.Spill.MaxAttempts, ClaimIdle: cfg.Spill.ClaimIdle,
		BackoffMin: cfg.Spill.BackoffMin, BackoffMax: cfg.Spill.BackoffMax,
		AfterPlace: m.afterDrainPlace,
	})
	if err != nil {
		return err
	}
	// A plain producer of its own group republishes what the broker gave up on.
	m.plain, err = rocketmq.NewProducer(
		producer.WithNsResolver(m.ns),
		producer.WithGroupName(cfg.Reconciler.ProducerGroup),
		producer.WithInstanceName(cfg.RocketMQ.InstanceName+"-reconciler"),
		producer.WithSendMsgTimeout(cfg.RocketMQ.SendTimeout),
		producer.WithRetry(cfg.RocketMQ.SendRetries),
	)
	if err != nil {
		return fmt.Errorf("reconciler producer: %w", err)
	}
	if err := m.plain.Start(); err != nil {
		m.plain = nil
		return fmt.Errorf("start reconciler producer: %w", err)
	}
	reconciler, err := listener.NewReconciler(store, m.plain, m.registry, m.Logger, listener.ReconcilerConfig{
		Topic: cfg.RocketMQ.Topic, Grace: cfg.Reconciler.GraceOr(cfg.RocketMQ.CheckInterval),
		Interval: cfg.Reconciler.Interval, Batch: cfg.Reconciler.Batch,
	})
	if err != nil {
		return err
	}
	// Closes unpaid orders whose half message is gone (no check-back will).
	closer, err := listener.NewCloser(store, m.registry, m.Logger, listener.CloserConfig{
		Grace: cfg.Closer.GraceOr(cfg.RocketMQ.CheckInterval), Interval: cfg.Closer.Interval, Batch: cfg.Closer.Batch,
		Releaser: m.fast.rollbacks(),
	})
	if err != nil {
		return err
	}
	tracker := listener.NewTracker(store, cfg.MySQL.Timeout*2, m.Logger)
	// MySQL forgets idempotency keys when Redis does.
	keys, err := order.NewKeyExpirer(store, m.Logger, order.KeyExpiryConfig{
		TTL: cfg.Redis.IdempotencyTTL, Interval: cfg.Idempotency.SweepInterval, Batch: cfg.Idempotency.SweepBatch,
	})
	if err != nil {
		return err
	}
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "txorder", Subsystem: "idempotency", Name: "keys_expired_total",
		Help: "Idempotency keys deleted from MySQL after redis.idempotency_ttl.",
	}, func() float64 { return float64(keys.Expired()) }))

	bg, stop := context.WithCancel(context.Background())
	m.stopBackground = stop
	run := func(fn func()) {
		m.background.Add(1)
		go func() { defer m.background.Done(); fn() }()
	}
	run(func() { m.redisBreaker.Run(bg, m.rdb) })
	run(func() { spilling.Run(bg) })
	run(func() { _ = store.RunStateView(bg) })
	run(func() { warmUp(bg, placer, cfg.RocketMQ.SendTimeout, m.Logger) })
	run(func() { sweepCache(bg, txl, cache, cfg.Transaction.CacheSweepInterval, m.Logger) })
	run(func() { _ = drainer.Run(bg) })
	run(func() { reconciler.Run(bg) })
	run(func() { closer.Run(bg) })
	run(func() { keys.Run(bg) })
	run(func() { m.runTracker(bg, tracker) })
	m.fast.run(bg, run)
	return nil
}

// runTracker starts the publish tracker's push consumer, retrying while
// the NameServer cannot give its route (the client refuses to start a
// consumer without one), and shuts it down when ctx ends.
func (m *Main) runTracker(ctx context.Context, tracker *listener.Tracker) {
	cfg := m.Config
	for attempt := 0; ; attempt++ {
		c, err := rocketmq.NewPushConsumer(
			consumer.WithNsResolver(m.ns),
			consumer.WithGroupName(listener.TrackerGroup),
			// Never the producer's instance: one client per instance name.
			consumer.WithInstance(cfg.RocketMQ.InstanceName+"-tracker"),
			consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset),
		)
		if err == nil {
			err = c.Subscribe(cfg.RocketMQ.Topic, consumer.MessageSelector{}, tracker.Handle)
		}
		if err == nil {
			err = c.Start()
		}
		if err == nil {
			<-ctx.Done()
			_ = c.Shutdown()
			return
		}
		if c != nil {
			_ = c.Shutdown()
		}
		if attempt == 0 {
			m.Logger.Warn("publish tracker not started; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// migrateTimeout bounds the migrations run at start. A migration that
// rebuilds a large table takes longer: turn migrate_on_start off and run
// `ordertool migrate` in a quiet hour (README, configuration).
const migrateTimeout = 30 * time.Second

// migrate applies pending migrations. With MySQL unreachable it starts
// anyway on the schema the last start left: orderd exists to accept orders
// while MySQL is down (they go to the Redis cache), and a replica that
// restarts during an outage must not stay down with it.
func (m *Main) migrate(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, m.Config.MySQL.ConnectTimeout+m.Config.MySQL.Timeout)
	err := m.db.PingContext(pctx)
	cancel()
	if err != nil {
		m.Logger.Warn("mysql unreachable at start: migrations skipped; running on the existing schema", "error", err)
		return nil
	}
	mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	applied, err := migrations.UpDSN(mctx, m.Config.MySQL.DSN(), migrateTimeout)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		m.Logger.Info("schema migrated", "versions", applied)
	}
	return nil
}

// warmUp makes the brokers know this producer, so that check-backs of half
// messages left open by a previous run reach it without waiting for the
// first placement (a producer that never sent is unknown to them). While
// RocketMQ is unreachable it retries with a growing pause, so a restart
// during an outage does not leave those half messages unanswered.
func warmUp(ctx context.Context, placer *listener.Placer, timeout time.Duration, logger *slog.Logger) {
	pause := time.Second
	for attempt := 0; ; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := placer.WarmUp(wctx)
		cancel()
		if err == nil {
			if attempt > 0 {
				logger.Info("rocketmq warm-up succeeded", "attempts", attempt+1)
			}
			return
		}
		if attempt == 0 {
			logger.Warn("rocketmq warm-up failed; retrying in the background", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// sweepCache moves orders cached during a MySQL outage into MySQL: a full
// batch is followed at once by the next, otherwise it waits an interval.
func sweepCache(ctx context.Context, txl *listener.Transaction, cache *fallback.OrderCache, every time.Duration, logger *slog.Logger) {
	const batch = 500
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := every
		ids, err := cache.IDs(ctx, batch)
		if err == nil && len(ids) > 0 {
			var n int
			n, err = txl.SweepCache(ctx, ids)
			if n > 0 {
				logger.Info("cached orders moved to mysql", "count", n)
			}
			if err == nil && len(ids) == batch {
				next = 0
			}
		}
		if err != nil && ctx.Err() == nil {
			logger.Debug("cache sweep stopped", "error", err)
		}
		timer.Reset(next)
	}
}

// apiLimits turns the limits configuration into the API's; disabled, it
// limits nothing.
func apiLimits(l configs.Limits) api.Limits {
	if !l.Enabled {
		return api.Limits{}
	}
	per := make(map[string]api.ClientLimit, len(l.Clients))
	for name, cl := range l.Clients {
		per[name] = api.ClientLimit{Rate: cl.Rate, Burst: cl.Burst}
	}
	return api.Limits{Rate: l.Rate, Burst: l.Burst, PerClient: per, MaxInFlight: l.MaxInFlight}
}

// resolveNameServers builds the resolver every RocketMQ client of orderd
// uses (names such as namesrv-1:9876 are looked up on each of the client's
// refreshes). A name that does not resolve does not stop orderd: it starts
// as with every NameServer down (orders are spilled to Redis), readiness
// reports rocketmq down naming it, and the clients pick its address up
// within 2 minutes of it resolving (10 s after start at the earliest).
// The resolver logs each name that does not resolve, and when it does.
func (m *Main) resolveNameServers() error {
	var err error
	m.ns, err = nsresolve.New(m.Config.RocketMQ.NameServers, m.Logger, nsresolve.Options{Lookup: m.lookupHost})
	if err != nil {
		return fmt.Errorf("rocketmq.name_servers: %w", err)
	}
	return nil
}
