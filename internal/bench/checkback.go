package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/halfmsg"
	"github.com/txorder/txorder/internal/migrations"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
)

// CheckPoint is one check round over K pending orders.
type CheckPoint struct {
	Pending       int     `json:"pending"`
	Checks        int     `json:"checks"`
	Seconds       float64 `json:"seconds"`
	ChecksPerSec  float64 `json:"checks_per_second"`
	Unknown       int     `json:"unknown_answers"`
	MaxPendingAt  int     `json:"max_pending_at_30s_interval"` // ChecksPerSec × 30 s
	SetupSeconds  float64 `json:"setup_seconds"`
	StateViewUsed bool    `json:"state_view"`
	// FastCommit: every check answered UNKNOWN also queued a move of the
	// order's half-message coordinates (written to Redis in the
	// background), as orderd does with the fast commit on.
	FastCommit bool `json:"fast_commit"`
}

// countingListener answers Execute with UNKNOWN (the order rows are bulk
// inserted) and hands check-backs to orderd's listener, counting them.
type countingListener struct {
	tx      *listener.Transaction
	checks  atomic.Int64
	unknown atomic.Int64
}

func (l *countingListener) ExecuteLocalTransaction(*primitive.Message) primitive.LocalTransactionState {
	return primitive.UnknowState
}

func (l *countingListener) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	st := l.tx.CheckLocalTransaction(m)
	if st == primitive.UnknowState {
		l.unknown.Add(1)
	}
	l.checks.Add(1)
	return st
}

func newDB(in *infra, database string) (*sql.DB, error) {
	dsn, err := mysql.ParseDSN(in.my.DSN())
	if err != nil {
		return nil, err
	}
	if database != "" {
		dsn.DBName = database
	}
	dsn.ParseTime = true
	return sql.Open("mysql", dsn.FormatDSN())
}

// measureCheckBack runs, for each K, one check round over K pending orders
// through the real client and orderd's listener.Transaction (wired as
// cmd/orderd wires it), in this process against an in-process broker.
func measureCheckBack(ctx context.Context, cfg Config, in *infra, logf func(string, ...any)) ([]CheckPoint, error) {
	var out []CheckPoint
	for i, k := range cfg.CheckPending {
		p, err := checkRound(ctx, in, k, fmt.Sprintf("bench_check_%d", i), !cfg.NoStateView, !cfg.NoFastCommit)
		if err != nil {
			return out, err
		}
		logf("checkback K=%-6d %8.0f checks/s (%d checks in %.2fs, setup %.1fs, state view %v, fast commit %s)",
			k, p.ChecksPerSec, p.Checks, p.Seconds, p.SetupSeconds, p.StateViewUsed, onOff(p.FastCommit))
		out = append(out, p)
	}
	return out, nil
}

func checkRound(ctx context.Context, in *infra, k int, database string, view, fast bool) (CheckPoint, error) {
	setup := time.Now()
	admin, err := newDB(in, "")
	if err != nil {
		return CheckPoint{}, err
	}
	_, err = admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+database+"` CHARACTER SET utf8mb4")
	if err != nil {
		admin.Close()
		return CheckPoint{}, err
	}
	defer func() {
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+database+"`")
		admin.Close()
	}()
	db, err := newDB(in, database)
	if err != nil {
		return CheckPoint{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	if _, err := migrations.Up(ctx, db); err != nil {
		return CheckPoint{}, fmt.Errorf("migrate: %w", err)
	}
	ids, err := insertPending(ctx, db, k)
	if err != nil {
		return CheckPoint{}, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: in.rd.Addr(), DB: 14})
	defer rdb.Close()
	store, stopView, err := newCheckStore(ctx, db, view)
	if err != nil {
		return CheckPoint{}, err
	}
	defer stopView()
	cache, err := fallback.NewOrderCache(rdb, fallback.CacheConfig{Prefix: keyPrefix, Timeout: 500 * time.Millisecond})
	if err != nil {
		return CheckPoint{}, err
	}
	txCfg := listener.TransactionConfig{CheckTimeout: 300 * time.Millisecond}
	if fast {
		// As orderd: every check answered UNKNOWN queues a move of the
		// order's coordinates, written to Redis in the background.
		hs, err := halfmsg.NewStore(rdb, halfmsg.StoreConfig{Prefix: keyPrefix, TTL: time.Hour})
		if err != nil {
			return CheckPoint{}, err
		}
		rec, err := halfmsg.NewRecorder(hs, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), halfmsg.RecorderConfig{ProducerGroup: "bench"})
		if err != nil {
			return CheckPoint{}, err
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = rec.Run(rctx); close(done) }()
		defer func() { stop(); <-done }()
		txCfg.HalfMessages = rec
	}
	tx, err := listener.NewTransaction(store, cache, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), txCfg)
	if err != nil {
		return CheckPoint{}, err
	}
	mq, err := rmqtest.NewServer(rmqtest.Options{TransactionTimeout: time.Second, CheckInterval: time.Hour,
		CheckMax: 1000, Topics: map[string]int{topic: 4}})
	if err != nil {
		return CheckPoint{}, err
	}
	defer mq.Close()
	l := &countingListener{tx: tx}
	group := "bench-check-" + uuid.NewString()[:8]
	p, err := rocketmq.NewTransactionProducer(l,
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{mq.NameServerAddr()})),
		producer.WithGroupName(group), producer.WithInstanceName(group), producer.WithSendMsgTimeout(5*time.Second),
		producer.WithRetry(1))
	if err != nil {
		return CheckPoint{}, err
	}
	if err := p.Start(); err != nil {
		return CheckPoint{}, err
	}
	defer func() { _ = p.Shutdown() }()
	if err := sendHalves(ctx, p, ids); err != nil {
		return CheckPoint{}, err
	}
	// Every half message must be older than the transaction timeout.
	select {
	case <-time.After(1200 * time.Millisecond):
	case <-ctx.Done():
		return CheckPoint{}, ctx.Err()
	}
	cp := CheckPoint{Pending: k, SetupSeconds: round3(time.Since(setup).Seconds()), StateViewUsed: view, FastCommit: fast}
	// The setup's garbage (K sends) is not the round's to collect.
	runtime.GC()
	l.checks.Store(0)
	l.unknown.Store(0)
	start := time.Now()
	mq.CheckNow()
	deadline := start.Add(5 * time.Minute)
	for l.checks.Load() < int64(k) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	cp.Checks = int(l.checks.Load())
	cp.Unknown = int(l.unknown.Load())
	cp.Seconds = round3(el)
	cp.ChecksPerSec = round3(float64(cp.Checks) / el)
	cp.MaxPendingAt = int(cp.ChecksPerSec * 30)
	if cp.Checks < k {
		return cp, fmt.Errorf("only %d of %d checks answered in %.0fs", cp.Checks, k, el)
	}
	return cp, nil
}

// insertPending bulk-inserts k PENDING_PAYMENT orders (deadline in an
// hour) and returns their ids.
func insertPending(ctx context.Context, db *sql.DB, k int) ([]string, error) {
	ids := make([]string, k)
	now := time.Now().UTC().Truncate(time.Microsecond)
	deadline := now.Add(time.Hour)
	const batch = 1000
	for lo := 0; lo < k; lo += batch {
		hi := min(lo+batch, k)
		var q strings.Builder
		q.WriteString(`INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at) VALUES `)
		args := make([]any, 0, (hi-lo)*4)
		for i := lo; i < hi; i++ {
			ids[i] = uuid.Must(uuid.NewV7()).String()
			if i > lo {
				q.WriteByte(',')
			}
			q.WriteString(`(?, 'bench', 'EUR', 100, 'PENDING_PAYMENT', ?, ?, ?)`)
			args = append(args, ids[i], deadline, now, now)
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			return nil, fmt.Errorf("insert pending orders: %w", err)
		}
	}
	return ids, nil
}

// sendHalves sends one half message per id (key = order id) from 16
// goroutines.
func sendHalves(ctx context.Context, p rocketmq.TransactionProducer, ids []string) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && firstErr.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				m := primitive.NewMessage(topic, []byte(`{"bench":true}`))
				m.WithKeys([]string{ids[i]})
				res, err := p.SendMessageInTransaction(ctx, m)
				if err == nil && res.Status != primitive.SendOK {
					err = fmt.Errorf("send status %v", res.Status)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("half message: %w", err))
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

// newCheckStore returns the order store the check-backs read, configured
// as cmd/orderd configures it: with the state view on, loaded once before
// the measurement and refreshed in the background as orderd does.
func newCheckStore(ctx context.Context, db *sql.DB, view bool) (*order.Store, func(), error) {
	s, err := order.NewStore(db, order.StoreConfig{Timeout: time.Second, StateView: order.StateViewConfig{Enabled: view}})
	if err != nil || !view {
		return s, func() {}, err
	}
	if err := s.RefreshStateView(ctx); err != nil {
		return nil, nil, fmt.Errorf("load state view: %w", err)
	}
	vctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.RunStateView(vctx) }()
	return s, func() { cancel(); <-done }, nil
}
