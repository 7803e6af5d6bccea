package roundtrip_test

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/internal/roundtrip"
	"github.com/txorder/txorder/internal/testenv"
)

var (
	sharedMySQL *testenv.MySQLServer
	sharedRedis *testenv.RedisServer
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, &sharedRedis)) }

func count(t *testing.T, reg *prometheus.Registry, metric, request string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "request" && l.GetValue() == request {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// TestMySQLRequests runs a placement-shaped transaction and a query against
// a real MariaDB and checks each request is counted once, with the driver's
// type conversions intact through the wrapper.
func TestMySQLRequests(t *testing.T) {
	cfg, err := mysql.ParseDSN(sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.InterpolateParams = true
	cfg.ParseTime = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	db := sql.OpenDB(roundtrip.New(reg).Connector(conn))
	defer db.Close()
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id BIGINT UNSIGNED PRIMARY KEY, s VARCHAR(10))"); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, r := range []string{"begin", "exec", "commit", "rollback", "query", "prepare", "stmt"} {
		before[r] = count(t, reg, "txorder_mysql_requests_total", r)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// uint64 above MaxInt64 needs the driver's own NamedValueChecker.
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (?, ?)", uint64(1<<63+1), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (?, ?)", 2, "b"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM t WHERE id > ?", 0).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count: %d, %v; want 2", n, err)
	}
	st, err := db.PrepareContext(ctx, "SELECT s FROM t WHERE id = ?")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := st.QueryRowContext(ctx, 2).Scan(&s); err != nil || s != "b" {
		t.Fatalf("prepared: %q, %v; want b", s, err)
	}
	st.Close()
	want := map[string]int{"begin": 2, "exec": 2, "commit": 1, "rollback": 1, "query": 1, "prepare": 1, "stmt": 1}
	for r, w := range want {
		if got := count(t, reg, "txorder_mysql_requests_total", r) - before[r]; got != w {
			t.Errorf("%s requests: got %d, want %d", r, got, w)
		}
	}
}

func TestRedisRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := roundtrip.New(reg)
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(t), PoolSize: 1})
	defer rdb.Close()
	rdb.AddHook(c.RedisHook())
	ctx := context.Background()
	// The connection's handshake (HELLO, SELECT …) is counted too: real
	// round trips, but only once per connection (go-redis 9.23 opens a
	// second one for its first MULTI); measure after them.
	tx := func() error {
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, "k")
			p.Del(ctx, "k")
			return nil
		})
		return err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := tx(); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, r := range []string{"command", "pipeline", "pipelined"} {
		before[r] = count(t, reg, "txorder_redis_requests_total", r)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := tx(); err != nil {
		t.Fatal(err)
	}
	// MULTI, GET, DEL, EXEC: one round trip.
	for r, w := range map[string]int{"command": 1, "pipeline": 1, "pipelined": 4} {
		if got := count(t, reg, "txorder_redis_requests_total", r) - before[r]; got != w {
			t.Errorf("%s: got %d, want %d", r, got, w)
		}
	}
}
