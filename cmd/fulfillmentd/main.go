// Command fulfillmentd is txorder's downstream service: it consumes
// ORDER_PAID (consumer group "fulfillment") and creates one shipment per
// paid order, acknowledging a message only after its MySQL transaction
// committed, and records the messages the broker gave up on
// (%DLQ%fulfillment) for `ordertool dlq`. It only wires dependencies; the
// handlers live in package listener.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/daemon"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/mqlog"
	"github.com/txorder/txorder/internal/nsresolve"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
)

func main() {
	path, code, ok := daemon.ConfigFlag("fulfillmentd", "configs/fulfillmentd.yaml", `fulfillmentd consumes ORDER_PAID and creates one shipment per paid order.
Configuration comes from the YAML file and TXORDER_FULFILLMENT__*
environment variables (see configs/fulfillmentd.yaml); secrets only from the
environment or *_file settings.`, os.Args[1:], os.Stderr)
	if !ok {
		os.Exit(code)
	}
	cfg, err := configs.LoadFulfillmentd(path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fulfillmentd:", err)
		os.Exit(2)
	}
	logger := cfg.Log.Logger(os.Stderr)
	os.Exit(daemon.Run("fulfillmentd", NewMain(cfg, logger), logger, "group", cfg.RocketMQ.Group, "topic", cfg.RocketMQ.Topic))
}

// Main is fulfillmentd as a value: tests build one with a config pointing
// at their own MariaDB and rmqtest, Open it on 127.0.0.1:0 and Close it.
type Main struct {
	Config configs.Fulfillmentd
	Logger *slog.Logger
	// BeforeApply is the handler's failure-injection hook
	// (listener.FulfillmentConfig.BeforeApply); nil in production.
	BeforeApply func(ctx context.Context, ev order.PaidEvent, reconsumeTimes int32) error

	// lookupHost is a test hook: how NameServer names are resolved
	// (default: DNS).
	lookupHost nsresolve.LookupFunc

	db       *sql.DB
	ns       *nsresolve.Resolver
	handler  *listener.Fulfillment
	consumer rocketmq.PushConsumer
	registry *prometheus.Registry
	srv      *http.Server
	ln       net.Listener
	served   chan error

	stopDLQ context.CancelFunc
	dlqDone chan struct{}
	dlqMu   sync.Mutex
	dlq     rocketmq.PushConsumer // nil until %DLQ%<group> exists
}

// NewMain returns an unopened Main.
func NewMain(cfg configs.Fulfillmentd, logger *slog.Logger) *Main {
	return &Main{Config: cfg, Logger: logger}
}

// Open connects to MySQL, migrates the schema when configured, starts the
// ORDER_PAID consumer, the dead letter recorder (in the background: its
// topic may not exist yet) and the probe server. It fails when the
// consumer cannot start (no NameServer name resolves, NameServer
// unreachable, topic unknown): a supervisor restarts it.
func (m *Main) Open(ctx context.Context) error {
	cfg := m.Config
	var err error
	m.db, err = sql.Open("mysql", cfg.MySQL.DSN())
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	m.db.SetMaxOpenConns(cfg.MySQL.MaxOpenConns)
	m.db.SetMaxIdleConns(cfg.MySQL.MaxIdleConns)
	m.db.SetConnMaxLifetime(cfg.MySQL.ConnMaxLife)
	if cfg.MySQL.MigrateOnStart {
		// Its own pool: the service's cuts off a statement after
		// mysql.timeout + 1 s, and a table rebuild takes longer.
		const bound = 30 * time.Second
		mctx, cancel := context.WithTimeout(ctx, bound)
		applied, err := migrations.UpDSN(mctx, cfg.MySQL.DSN(), bound)
		cancel()
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			m.Logger.Info("schema migrated", "versions", applied)
		}
	}
	store, err := listener.NewFulfillmentStore(m.db, cfg.Handler.Timeout)
	if err != nil {
		return err
	}
	dead, err := listener.NewDeadLetterStore(m.db, cfg.Handler.Timeout)
	if err != nil {
		return err
	}
	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newDeadLetterCollector(dead, cfg.RocketMQ.Group))
	metrics := listener.NewFulfillmentMetrics(m.registry)
	m.handler, err = listener.NewFulfillment(store, dead, metrics, m.Logger, listener.FulfillmentConfig{
		Group: cfg.RocketMQ.Group, Timeout: cfg.Handler.Timeout, BeforeApply: m.BeforeApply,
	})
	if err != nil {
		return err
	}
	recorder, err := listener.NewDeadLetterRecorder(dead, cfg.RocketMQ.Group, m.handler, metrics, m.Logger, cfg.Handler.Timeout)
	if err != nil {
		return err
	}

	mqlog.Install(m.Logger)
	if m.ns, err = nsresolve.New(cfg.RocketMQ.NameServers, m.Logger, nsresolve.Options{Lookup: m.lookupHost}); err != nil {
		return fmt.Errorf("rocketmq.name_servers: %w", err)
	}
	// Without a NameServer the consumer cannot start; say which names
	// failed rather than the client's "no route" (a name that does not
	// resolve while another does is only logged: the client uses the other).
	if addrs, err := m.ns.Lookup(ctx); len(addrs) == 0 {
		return fmt.Errorf("rocketmq.name_servers: none resolves: %w", err)
	}
	m.consumer, err = newConsumer(cfg, m.ns, cfg.RocketMQ.Group, cfg.RocketMQ.InstanceName, cfg.RocketMQ.Topic, m.handler.Consume,
		consumer.WithConsumeGoroutineNums(cfg.RocketMQ.ConsumeGoroutines),
		consumer.WithMaxReconsumeTimes(int32(cfg.RocketMQ.MaxReconsumeTimes)),
		consumer.WithConsumeMessageBatchMaxSize(cfg.RocketMQ.BatchSize),
		consumer.WithPullBatchSize(int32(cfg.RocketMQ.PullBatchSize)),
	)
	if err != nil {
		return fmt.Errorf("rocketmq consumer of %s: %w", cfg.RocketMQ.Topic, err)
	}

	bg, stop := context.WithCancel(context.Background())
	m.stopDLQ = stop
	m.dlqDone = make(chan struct{})
	go func() {
		defer close(m.dlqDone)
		m.runDeadLetters(bg, recorder)
	}()

	m.ln, err = net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTP.Addr, err)
	}
	m.srv = &http.Server{
		Handler:           m.routes(store),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.srv.Serve(m.ln) }()
	return nil
}

// newConsumer starts a clustering, concurrently consuming push consumer of
// group on topic. A new group starts at the first offset: every event
// still on the topic is applied (idempotently).
func newConsumer(cfg configs.Fulfillmentd, ns primitive.NsResolver, group, instance, topic string,
	handle func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error), opts ...consumer.Option) (rocketmq.PushConsumer, error) {
	opts = append([]consumer.Option{
		consumer.WithNsResolver(ns),
		consumer.WithGroupName(group),
		consumer.WithInstance(instance),
		consumer.WithConsumerModel(consumer.Clustering),
		consumer.WithConsumerOrder(false),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	}, opts...)
	c, err := rocketmq.NewPushConsumer(opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Subscribe(topic, consumer.MessageSelector{}, handle); err != nil {
		_ = c.Shutdown()
		return nil, err
	}
	// Start shuts the consumer down itself when it fails.
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// runDeadLetters subscribes the recorder to %DLQ%<group>. The broker
// creates that topic with the first dead letter, so until then Start fails
// and is retried every dead_letter.retry_interval.
func (m *Main) runDeadLetters(ctx context.Context, recorder *listener.DeadLetterRecorder) {
	cfg := m.Config
	topic := listener.DLQTopic(cfg.RocketMQ.Group)
	logged := false
	for {
		c, err := newConsumer(cfg, m.ns, cfg.DeadLetter.Group, cfg.RocketMQ.InstanceName+"-dlq", topic, recorder.Consume)
		if err == nil {
			m.dlqMu.Lock()
			if ctx.Err() != nil {
				m.dlqMu.Unlock()
				_ = c.Shutdown()
				return
			}
			m.dlq = c
			m.dlqMu.Unlock()
			m.Logger.Info("dead letter recorder subscribed", "topic", topic, "group", cfg.DeadLetter.Group)
			return
		}
		if !logged {
			m.Logger.Info("dead letter recorder waiting for its topic (created with the first dead letter)", "topic", topic, "error", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cfg.DeadLetter.RetryInterval):
		}
	}
}

func (m *Main) dlqSubscribed() bool {
	m.dlqMu.Lock()
	defer m.dlqMu.Unlock()
	return m.dlq != nil
}

func (m *Main) routes(store *listener.FulfillmentStore) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		type check struct {
			Status string `json:"status"`
			Error  string `json:"error,omitempty"`
		}
		checks := map[string]check{}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		// Every message needs MySQL: without it each one is retried. A
		// NameServer outage is reported but does not stop consumption
		// (the client keeps its routes and talks to the brokers).
		ready := true
		if err := store.Ping(ctx); err != nil {
			checks["mysql"] = check{Status: "down", Error: err.Error()}
			ready = false
		} else {
			checks["mysql"] = check{Status: "up"}
		}
		if err := m.ns.DialAny(ctx); err != nil {
			checks["rocketmq"] = check{Status: "down", Error: err.Error()}
		} else {
			checks["rocketmq"] = check{Status: "up"}
		}
		// Waiting is normal: no message has gone dead yet.
		if m.dlqSubscribed() {
			checks["dead_letter"] = check{Status: "up"}
		} else {
			checks["dead_letter"] = check{Status: "waiting"}
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "not_ready", http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": checks,
			"in_flight": m.handler.InFlight()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Addr is the address of the probe server (useful with port 0).
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Close stops consuming and waits for the handlers already running, all
// within http.shutdown_timeout: it suspends pulling, waits for in-flight
// handlers so that their offsets are committed by the shutdown, shuts the
// consumers down, waits for any handler that started meanwhile (its result
// is dropped by the client and the message is redelivered, harmlessly),
// then stops the probe server and closes MySQL. It is safe to call on a
// partly opened Main.
func (m *Main) Close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.HTTP.ShutdownTimeout)
	defer cancel()
	if m.stopDLQ != nil {
		m.stopDLQ()
		<-m.dlqDone
		m.stopDLQ = nil
	}
	if m.consumer != nil {
		m.consumer.Suspend()
		if err := m.handler.WaitIdle(ctx); err != nil {
			errs = append(errs, fmt.Errorf("wait for handlers: %w", err))
		}
		if err := m.consumer.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("rocketmq consumer shutdown: %w", err))
		}
		if err := m.handler.WaitIdle(ctx); err != nil {
			errs = append(errs, fmt.Errorf("wait for handlers: %w", err))
		}
		m.consumer = nil
	}
	m.dlqMu.Lock()
	if m.dlq != nil {
		if err := m.dlq.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("dead letter consumer shutdown: %w", err))
		}
		m.dlq = nil
	}
	m.dlqMu.Unlock()
	if m.srv != nil {
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("http serve: %w", err))
		}
		m.srv = nil
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
		m.db = nil
	}
	return errors.Join(errs...)
}
