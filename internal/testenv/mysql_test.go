package testenv

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func openMySQL(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMySQLKillStartKeepsCommittedData(t *testing.T) {
	t.Parallel()
	srv := MySQL(t)
	db := openMySQL(t, srv.DSN())
	ctx := context.Background()

	mustExec(t, db, "CREATE TABLE kv (k VARCHAR(16) PRIMARY KEY, v INT NOT NULL)")
	mustExec(t, db, "INSERT INTO kv VALUES ('a', 1)")

	if err := srv.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	// A killed server refuses connections at once; a client must not hang.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	begin := time.Now()
	err := db.PingContext(qctx)
	if err == nil {
		t.Fatal("Ping after Kill succeeded, want an error")
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Ping after Kill took %s, want < 2s (err %v)", took, err)
	}

	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var v int
	if err := db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = 'a'").Scan(&v); err != nil {
		t.Fatalf("select after restart: %v", err)
	}
	if v != 1 {
		t.Errorf("v after restart = %d, want 1", v)
	}

	// Graceful stop and start keep data too, on the same address.
	addr := srv.Addr()
	mustExec(t, db, "UPDATE kv SET v = 2 WHERE k = 'a'")
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if got := srv.Addr(); got != addr {
		t.Errorf("Addr after restart = %s, want %s", got, addr)
	}
	if err := db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = 'a'").Scan(&v); err != nil {
		t.Fatalf("select after stop/start: %v", err)
	}
	if v != 2 {
		t.Errorf("v after stop/start = %d, want 2", v)
	}
}

func TestMySQLSettings(t *testing.T) {
	t.Parallel()
	db := openMySQL(t, sharedMySQL.NewDatabase(t))
	var flush, tz, charset string
	var logBin int
	err := db.QueryRow("SELECT @@innodb_flush_log_at_trx_commit, @@time_zone, @@character_set_server, @@log_bin").
		Scan(&flush, &tz, &charset, &logBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"innodb_flush_log_at_trx_commit", flush, "1"},
		{"time_zone", tz, "+00:00"},
		{"character_set_server", charset, "utf8mb4"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if logBin != 0 {
		t.Errorf("log_bin = %d, want 0", logBin)
	}
	var lockWait int
	if err := sharedMySQL.adminDB().QueryRow("SELECT @@session.lock_wait_timeout").Scan(&lockWait); err != nil {
		t.Fatal(err)
	}
	if lockWait != 10 {
		t.Errorf("admin lock_wait_timeout = %d, want 10 so that a DROP in cleanup cannot hang", lockWait)
	}
	var ts time.Time
	if err := db.QueryRow("SELECT NOW()").Scan(&ts); err != nil {
		t.Fatalf("parseTime: %v", err)
	}
}

func TestMySQLNewDatabaseIsolation(t *testing.T) {
	t.Parallel()
	var names [2]string
	t.Run("pair", func(t *testing.T) {
		dsnA, dsnB := sharedMySQL.NewDatabase(t), sharedMySQL.NewDatabase(t)
		a, b := openMySQL(t, dsnA), openMySQL(t, dsnB)
		for i, dsn := range []string{dsnA, dsnB} {
			cfg, err := mysql.ParseDSN(dsn)
			if err != nil {
				t.Fatal(err)
			}
			names[i] = cfg.DBName
		}
		if names[0] == names[1] {
			t.Fatalf("NewDatabase returned the same database %q twice", names[0])
		}
		mustExec(t, a, "CREATE TABLE t (id INT PRIMARY KEY)")
		mustExec(t, a, "INSERT INTO t VALUES (1)")
		mustExec(t, b, "CREATE TABLE t (id INT PRIMARY KEY)")
		var n int
		if err := b.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("rows in second database = %d, want 0", n)
		}
		a.Close()
		b.Close()
	})

	// The subtest's cleanup has dropped both databases.
	db := openMySQL(t, sharedMySQL.DSN())
	for _, name := range names {
		var got string
		err := db.QueryRow("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&got)
		if !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("database %s after cleanup: err = %v, want sql.ErrNoRows", name, err)
		}
	}
}

func TestMissingBinaryNamesPackage(t *testing.T) {
	_, err := findBinary("txorder-no-such-server", "txorder-server-pkg")
	if err == nil {
		t.Fatal("findBinary found a binary that does not exist")
	}
	want := "apt-get install -y txorder-server-pkg"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
}

func TestIdentPart(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"TestX/sub-case", "TestX_sub_case"},
		{"Test`; DROP", "Test___DROP"},
		{strings.Repeat("a", 50), strings.Repeat("a", 40)},
	} {
		if got := identPart(c.in, 40); got != c.want {
			t.Errorf("identPart(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func mustExec(t *testing.T, db *sql.DB, query string) {
	t.Helper()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
