package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
)

const (
	apiKey        = "bench-key-0123456789"
	webhookSecret = "bench-webhook-secret-0123456789abcdef"
	topic         = "ORDER_PAID"
	keyPrefix     = "txorder:"
)

// infra is MariaDB and Redis, started once per run.
type infra struct {
	my     *testenv.MySQLServer
	stopMy func()
	rd     *testenv.RedisServer
	stopRd func()
}

func startInfra() (*infra, error) {
	my, stopMy, err := testenv.StartSharedMySQL()
	if err != nil {
		return nil, err
	}
	rd, stopRd, err := testenv.StartSharedRedis()
	if err != nil {
		stopMy()
		return nil, err
	}
	return &infra{my: my, stopMy: stopMy, rd: rd, stopRd: stopRd}, nil
}

func (in *infra) close() {
	in.stopRd()
	in.stopMy()
}

// stack is one orderd (and optionally one fulfillmentd) process on its own
// database, Redis db and in-process RocketMQ server.
type stack struct {
	cfg   Config
	in    *infra
	db    *sql.DB // the stack's database, pool as orderd's
	dbDSN *mysql.Config
	rdb   *redis.Client
	cache *fallback.OrderCache
	spill *fallback.SpillQueue
	mq    *rmqtest.Server // in-process RocketMQ; nil with brokerProcess
	// nsAddr is the NameServer's address, of mq or of the broker process.
	nsAddr string

	orderd, fulfillmentd *process
	broker               *process // rmqdev, with brokerProcess
	baseURL              string
	env                  []string
}

type stackOptions struct {
	name          string
	database      string
	redisDB       int
	checkInterval time.Duration
	fulfillment   bool
	fastCommitOff bool
	// groupCommitOff and directSendOff turn off orderd's defaults
	// (group_commit.enabled, rocketmq.direct_send), for comparison.
	groupCommitOff bool
	directSendOff  bool
	extraEnv       []string
	// brokerProcess runs RocketMQ as bin/rmqdev (NameServer and broker in
	// one process) instead of in the bench process, so that its CPU time
	// is measured apart from the load generator's. The stack then cannot
	// stop and restart the broker (the degraded runs need mq).
	brokerProcess bool
}

func newStack(ctx context.Context, cfg Config, in *infra, o stackOptions) (*stack, error) {
	s := &stack{cfg: cfg, in: in}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	dsn, err := mysql.ParseDSN(in.my.DSN())
	if err != nil {
		return nil, err
	}
	admin, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		return nil, err
	}
	_, err = admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+o.database+"` CHARACTER SET utf8mb4")
	admin.Close()
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	dsn.DBName = o.database
	dsn.ParseTime = true
	s.dbDSN = dsn
	// The raw baseline talks to MySQL as orderd does (cmd/orderd: client-
	// side interpolation, one round trip per statement).
	raw := *dsn
	raw.InterpolateParams = true
	raw.MultiStatements = true // the transaction goes as one query, as orderd sends it
	s.db, err = sql.Open("mysql", raw.FormatDSN())
	if err != nil {
		return nil, err
	}
	s.db.SetMaxOpenConns(64) // as configs/orderd.yaml
	s.db.SetMaxIdleConns(64)
	s.rdb = redis.NewClient(&redis.Options{Addr: in.rd.Addr(), DB: o.redisDB})
	if err := s.rdb.FlushDB(ctx).Err(); err != nil {
		return nil, fmt.Errorf("flush redis db: %w", err)
	}
	ccfg := fallback.CacheConfig{Prefix: keyPrefix, Timeout: 2 * time.Second}
	if s.cache, err = fallback.NewOrderCache(s.rdb, ccfg); err != nil {
		return nil, err
	}
	if s.spill, err = fallback.NewSpillQueue(s.rdb, ccfg); err != nil {
		return nil, err
	}
	if o.brokerProcess {
		if err := s.startBroker(ctx, o); err != nil {
			return nil, err
		}
	} else {
		s.mq, err = rmqtest.NewServer(rmqtest.Options{
			TransactionTimeout: o.checkInterval, CheckInterval: o.checkInterval, CheckMax: 1000,
			Topics: map[string]int{topic: 4},
		})
		if err != nil {
			return nil, err
		}
		s.nsAddr = s.mq.NameServerAddr()
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.baseURL = "http://127.0.0.1:" + strconv.Itoa(port)
	s.env = []string{
		"TXORDER_HTTP__ADDR=127.0.0.1:" + strconv.Itoa(port),
		"TXORDER_HTTP__DRAIN_DELAY=0s", // no load balancer to wait for
		"TXORDER_MYSQL__ADDR=" + dsn.Addr,
		"TXORDER_MYSQL__USER=" + dsn.User,
		"TXORDER_MYSQL__PASSWORD=" + dsn.Passwd,
		"TXORDER_MYSQL__DATABASE=" + o.database,
		"TXORDER_MYSQL__TIMEOUT=1s",
		"TXORDER_REDIS__ADDR=" + in.rd.Addr(),
		"TXORDER_REDIS__DB=" + strconv.Itoa(o.redisDB),
		"TXORDER_REDIS__TIMEOUT=500ms",
		"TXORDER_REDIS__KEY_PREFIX=" + keyPrefix,
		"TXORDER_ROCKETMQ__NAME_SERVERS=" + s.nsAddr,
		"TXORDER_ROCKETMQ__INSTANCE_NAME=orderd-" + o.name,
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=" + o.checkInterval.String(),
		"TXORDER_ROCKETMQ__CHECK_INTERVAL=" + o.checkInterval.String(),
		"TXORDER_ROCKETMQ__CHECK_MAX=1000",
		"TXORDER_ROCKETMQ__SEND_TIMEOUT=1s",
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=1s",
		"TXORDER_TRANSACTION__CHECK_TIMEOUT=300ms",
		"TXORDER_TRANSACTION__BREAKER_OPEN_FOR=500ms",
		"TXORDER_ORDER__PAYMENT_WINDOW=10m",
		"TXORDER_AUTH__API_KEYS=bench:" + apiKey,
		// The limiter stays on (its cost is part of every placement) but
		// never throttles the bench client; TXORDER_LIMITS__ENABLED=false
		// in the environment turns it off to measure that cost.
		"TXORDER_LIMITS__CLIENTS__BENCH__RATE=1000000",
		"TXORDER_LIMITS__CLIENTS__BENCH__BURST=1000000",
		"TXORDER_PAYMENT__WEBHOOK_SECRET=" + webhookSecret,
		"TXORDER_SPILL__BACKOFF_MIN=50ms",
		"TXORDER_SPILL__BACKOFF_MAX=500ms",
		"TXORDER_SPILL__BREAKER_OPEN_FOR=500ms",
		"TXORDER_RECONCILER__INTERVAL=1s",
		"TXORDER_LOG__LEVEL=warn",
	}
	if o.fastCommitOff {
		s.env = append(s.env, "TXORDER_FAST_COMMIT__ENABLED=false")
	}
	if o.groupCommitOff {
		s.env = append(s.env, "TXORDER_GROUP_COMMIT__ENABLED=false")
	}
	if o.directSendOff {
		s.env = append(s.env, "TXORDER_ROCKETMQ__DIRECT_SEND=false")
	}
	s.env = append(s.env, o.extraEnv...)
	s.orderd, err = startProcess(ctx, filepath.Join(cfg.BinDir, "orderd"), []string{"--config", cfg.OrderdConfig},
		s.env, filepath.Join(cfg.OutDir, "logs", o.name+"-orderd.log"))
	if err != nil {
		return nil, err
	}
	if err := s.orderd.waitReady(ctx, s.baseURL+"/readyz"); err != nil {
		return nil, fmt.Errorf("orderd not ready: %w (log %s)", err, s.orderd.logPath)
	}
	if o.fulfillment {
		fport, err := freePort()
		if err != nil {
			return nil, err
		}
		p := "TXORDER_FULFILLMENT__"
		fenv := []string{
			p + "HTTP__ADDR=127.0.0.1:" + strconv.Itoa(fport),
			p + "MYSQL__ADDR=" + dsn.Addr,
			p + "MYSQL__USER=" + dsn.User,
			p + "MYSQL__PASSWORD=" + dsn.Passwd,
			p + "MYSQL__DATABASE=" + o.database,
			p + "MYSQL__MIGRATE_ON_START=false",
			p + "ROCKETMQ__NAME_SERVERS=" + s.nsAddr,
			p + "ROCKETMQ__INSTANCE_NAME=fulfillmentd-" + o.name,
			p + "LOG__LEVEL=warn",
		}
		s.fulfillmentd, err = startProcess(ctx, filepath.Join(cfg.BinDir, "fulfillmentd"), []string{"--config", cfg.FulfillmentdConfig},
			fenv, filepath.Join(cfg.OutDir, "logs", o.name+"-fulfillmentd.log"))
		if err != nil {
			return nil, err
		}
		if err := s.fulfillmentd.waitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(fport)+"/readyz"); err != nil {
			return nil, fmt.Errorf("fulfillmentd not ready: %w (log %s)", err, s.fulfillmentd.logPath)
		}
	}
	ok = true
	return s, nil
}

func (s *stack) close() {
	if s.fulfillmentd != nil {
		s.fulfillmentd.stop()
	}
	if s.orderd != nil {
		s.orderd.stop()
	}
	if s.mq != nil {
		s.mq.Close()
	}
	if s.broker != nil {
		s.broker.stop()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// startBroker runs bin/rmqdev on two free ports and waits until both
// accept connections.
func (s *stack) startBroker(ctx context.Context, o stackOptions) error {
	nsPort, err := freePort()
	if err != nil {
		return err
	}
	brPort, err := freePort()
	if err != nil {
		return err
	}
	s.nsAddr = "127.0.0.1:" + strconv.Itoa(nsPort)
	brAddr := "127.0.0.1:" + strconv.Itoa(brPort)
	s.broker, err = startProcess(ctx, filepath.Join(s.cfg.BinDir, "rmqdev"), []string{
		"--namesrv-addr", s.nsAddr, "--broker-addr", brAddr,
		"--check-interval", o.checkInterval.String(), "--check-timeout", o.checkInterval.String(), "--check-max", "1000",
		"--topics", topic + ":4", "--log-level", "warn",
	}, nil, filepath.Join(s.cfg.OutDir, "logs", o.name+"-rmqdev.log"))
	if err != nil {
		return err
	}
	for _, addr := range []string{s.nsAddr, brAddr} {
		if err := s.broker.waitTCP(ctx, addr, 30*time.Second); err != nil {
			return fmt.Errorf("rmqdev not listening: %w (log %s)", err, s.broker.logPath)
		}
	}
	return nil
}

// pids names the processes whose CPU time a run is charged with.
func (s *stack) pids() map[string]int {
	p := map[string]int{"mariadbd": s.in.my.Pid(), "redis": s.in.rd.Pid(), "orderd": s.orderd.cmd.Process.Pid}
	self := "loadgen"
	if s.broker != nil {
		p["broker"] = s.broker.cmd.Process.Pid
	} else {
		self = "loadgen+broker" // the in-process broker runs in the bench process
	}
	p[self] = os.Getpid()
	return p
}

// process is a child process whose output goes to a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	done    chan struct{}
}

func startProcess(ctx context.Context, bin string, args, env []string, logPath string) (*process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build, or pass --bin)", bin, err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, logPath: logPath, log: f, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitReady polls url until it answers 200, the process exits, or a minute
// passes.
func (p *process) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := waitHTTP(ctx, url, time.Minute)
	select {
	case <-p.done:
		return fmt.Errorf("exited: %s", lastLine(p.logPath))
	default:
	}
	return err
}

// waitTCP polls addr until it accepts a connection, the process exits, or
// timeout passes.
func (p *process) waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %s", lastLine(p.logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %s: %w", addr, timeout, err)
		}
	}
}

func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// stop sends SIGTERM, then SIGKILL after 15s.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200, for at most timeout.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error = errors.New("no answer")
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			last = fmt.Errorf("status %d", res.StatusCode)
		} else {
			last = err
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s after %s: %w", url, timeout, last)
}
