// Package roundtrip counts the requests a process makes to MySQL and Redis
// where it makes them: a database/sql connector wrapper and a go-redis
// hook. `ordertool bench` divides the counters' deltas by the placements of
// a run to report round trips per placement (docs/performance.md).
//
// A MySQL request is one command the driver writes and waits for:
// START TRANSACTION, COMMIT, ROLLBACK, an Exec or a Query (one each with
// interpolateParams, which orderd uses), a prepare, a prepared statement's
// execution, a ping. A Redis request is one command, or one pipeline (a
// MULTI/EXEC transaction included) however many commands it carries.
package roundtrip

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Counter holds the request counters, registered on one registry.
type Counter struct {
	mysql *prometheus.CounterVec
	redis *prometheus.CounterVec

	begin, commit, rollback, exec, query, prepare, stmt, ping prometheus.Counter
	command, pipeline, pipelined                              prometheus.Counter
}

// New registers txorder_mysql_requests_total{request} and
// txorder_redis_requests_total{request} on reg.
func New(reg prometheus.Registerer) *Counter {
	c := &Counter{
		mysql: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "txorder_mysql_requests_total",
			Help: "Requests sent to MySQL, each one round trip, by kind (begin, commit, rollback, exec, query, prepare, stmt, ping)."},
			[]string{"request"}),
		redis: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "txorder_redis_requests_total",
			Help: "Round trips to Redis: command (one command), pipeline (one pipeline or MULTI/EXEC); pipelined counts the commands pipelines carried."},
			[]string{"request"}),
	}
	// Resolved once: a label lookup per request would cost more than the
	// count itself.
	c.begin, c.commit, c.rollback = c.mysql.WithLabelValues("begin"), c.mysql.WithLabelValues("commit"), c.mysql.WithLabelValues("rollback")
	c.exec, c.query, c.prepare = c.mysql.WithLabelValues("exec"), c.mysql.WithLabelValues("query"), c.mysql.WithLabelValues("prepare")
	c.stmt, c.ping = c.mysql.WithLabelValues("stmt"), c.mysql.WithLabelValues("ping")
	c.command, c.pipeline, c.pipelined = c.redis.WithLabelValues("command"), c.redis.WithLabelValues("pipeline"), c.redis.WithLabelValues("pipelined")
	if reg != nil {
		reg.MustRegister(c.mysql, c.redis)
	}
	return c
}

// RedisHook returns a go-redis hook that counts every command and pipeline.
func (c *Counter) RedisHook() redis.Hook { return redisHook{c} }

type redisHook struct{ c *Counter }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.c.command.Inc()
		return next(ctx, cmd)
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.c.pipeline.Inc()
		h.c.pipelined.Add(float64(len(cmds)))
		return next(ctx, cmds)
	}
}

// Connector wraps a database/sql driver connector (mysql.NewConnector) so
// that every request its connections send is counted. The connections keep
// the driver's optional interfaces that database/sql looks for.
func (c *Counter) Connector(next driver.Connector) driver.Connector {
	return connector{next: next, c: c}
}

type connector struct {
	next driver.Connector
	c    *Counter
}

func (k connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := k.next.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: dc, c: k.c}, nil
}

func (k connector) Driver() driver.Driver { return k.next.Driver() }

// conn implements what go-sql-driver/mysql's connection implements; a
// method the wrapped connection lacks answers driver.ErrSkip (database/sql
// then falls back) or nothing.
type conn struct {
	driver.Conn
	c *Counter
}

var (
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

func (cn *conn) Prepare(query string) (driver.Stmt, error) {
	return cn.PrepareContext(context.Background(), query)
}

func (cn *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	cn.c.prepare.Inc()
	var st driver.Stmt
	var err error
	if p, ok := cn.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = cn.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &stmt{Stmt: st, c: cn.c}, nil
}

func (cn *conn) Begin() (driver.Tx, error) {
	return cn.BeginTx(context.Background(), driver.TxOptions{})
}

func (cn *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cn.c.begin.Inc()
	var tx driver.Tx
	var err error
	if b, ok := cn.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = cn.Conn.Begin() //nolint:staticcheck // drivers without BeginTx
	}
	if err != nil {
		return nil, err
	}
	return &txn{Tx: tx, c: cn.c}, nil
}

func (cn *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := cn.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if !errors.Is(err, driver.ErrSkip) { // ErrSkip: nothing sent, database/sql prepares instead
		cn.c.exec.Inc()
	}
	return res, err
}

func (cn *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := cn.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if !errors.Is(err, driver.ErrSkip) {
		cn.c.query.Inc()
	}
	return rows, err
}

func (cn *conn) Ping(ctx context.Context) error {
	p, ok := cn.Conn.(driver.Pinger)
	if !ok {
		return nil
	}
	cn.c.ping.Inc()
	return p.Ping(ctx)
}

func (cn *conn) ResetSession(ctx context.Context) error {
	if r, ok := cn.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cn *conn) IsValid() bool {
	if v, ok := cn.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cn *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := cn.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type txn struct {
	driver.Tx
	c *Counter
}

func (t *txn) Commit() error {
	t.c.commit.Inc()
	return t.Tx.Commit()
}

func (t *txn) Rollback() error {
	t.c.rollback.Inc()
	return t.Tx.Rollback()
}

type stmt struct {
	driver.Stmt
	c *Counter
}

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	s.c.stmt.Inc()
	return s.Stmt.Exec(args) //nolint:staticcheck // the driver's own method
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	s.c.stmt.Inc()
	return s.Stmt.Query(args) //nolint:staticcheck // the driver's own method
}

func (s *stmt) ColumnConverter(idx int) driver.ValueConverter {
	if cc, ok := s.Stmt.(driver.ColumnConverter); ok { //nolint:staticcheck // the driver's own method
		return cc.ColumnConverter(idx)
	}
	return driver.DefaultParameterConverter
}

func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
