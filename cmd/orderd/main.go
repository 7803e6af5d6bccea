// Command orderd is the txorder order service: the HTTP API, and (as the
// later parts land) the transactional producer, the spill-queue drainer and
// the reconciler. It only wires dependencies; behaviour lives in packages.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/order"
)

func main() {
	fs := flag.NewFlagSet("orderd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: orderd [--config FILE]

orderd serves the txorder order API. Configuration comes from the YAML file
and TXORDER_* environment variables (see configs/orderd.yaml); secrets only
from the environment or *_file settings.

Flags:
`)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "configs/orderd.yaml", "path of the YAML configuration file (empty: defaults and environment only)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	cfg, err := configs.LoadOrderd(*configPath, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orderd:", err)
		os.Exit(2)
	}
	logger := newLogger(os.Stderr, cfg.Log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	m := NewMain(cfg, logger)
	if err := m.Open(ctx); err != nil {
		logger.Error("start failed", "error", err)
		_ = m.Close()
		os.Exit(1)
	}
	logger.Info("orderd ready", "addr", m.Addr())
	<-ctx.Done()
	logger.Info("shutting down")
	if err := m.Close(); err != nil {
		logger.Error("shutdown", "error", err)
		os.Exit(1)
	}
}

func newLogger(w io.Writer, cfg configs.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by configs
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Main is orderd as a value: tests build one with a config pointing at their
// own MariaDB and Redis, Open it on 127.0.0.1:0 and Close it.
type Main struct {
	Config configs.Orderd
	Logger *slog.Logger

	db       *sql.DB
	rdb      *redis.Client
	registry *prometheus.Registry
	srv      *http.Server
	ln       net.Listener
	served   chan error
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
	m.db, err = sql.Open("mysql", cfg.MySQL.DSN())
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	m.db.SetMaxOpenConns(cfg.MySQL.MaxOpenConns)
	m.db.SetMaxIdleConns(cfg.MySQL.MaxIdleConns)
	m.db.SetConnMaxLifetime(cfg.MySQL.ConnMaxLife)
	if cfg.MySQL.MigrateOnStart {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		applied, err := migrations.Up(mctx, m.db)
		cancel()
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			m.Logger.Info("schema migrated", "versions", applied)
		}
	}
	m.rdb = redis.NewClient(&redis.Options{
		Addr: cfg.Redis.Addr, Password: cfg.Redis.Password, DB: cfg.Redis.DB,
		DialTimeout: cfg.Redis.Timeout, ReadTimeout: cfg.Redis.Timeout, WriteTimeout: cfg.Redis.Timeout,
		MaxRetries: 1,
	})

	store, err := order.NewStore(m.db, order.StoreConfig{Timeout: cfg.MySQL.Timeout})
	if err != nil {
		return err
	}
	svc, err := order.NewService(store, order.DirectPlacer{Store: store}, order.ServiceConfig{PaymentWindow: cfg.Order.PaymentWindow})
	if err != nil {
		return err
	}

	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler, err := api.NewHandler(api.Config{
		Orders:       svc,
		Clients:      clients,
		Registry:     m.registry,
		Logger:       m.Logger,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		Checks: []api.Check{
			{Name: "mysql", Required: true, Probe: store.Ping},
			{Name: "redis", Probe: func(ctx context.Context) error { return m.rdb.Ping(ctx).Err() }},
			{Name: "rocketmq", Probe: func(ctx context.Context) error { return dialAny(ctx, cfg.RocketMQ.NameServers) }},
		},
	})
	if err != nil {
		return err
	}

	m.ln, err = net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTP.Addr, err)
	}
	m.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.srv.Serve(m.ln) }()
	return nil
}

// Addr is the address the API listens on (useful with port 0).
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Close shuts down in dependency order: stop accepting and drain in-flight
// requests (bounded by http.shutdown_timeout), then close the pools the
// handlers used. It is safe to call on a partly opened Main.
func (m *Main) Close() error {
	var errs []error
	if m.srv != nil {
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

// dialAny reports whether any NameServer accepts a TCP connection.
func dialAny(ctx context.Context, addrs []string) error {
	var d net.Dialer
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			return c.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
