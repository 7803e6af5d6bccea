package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLServer is a mariadbd process owned by a test binary, listening on
// 127.0.0.1 with its data in a temporary directory. It can be killed and
// started again on the same port with its data intact.
type MySQLServer struct {
	proc      *process
	version   string
	port      int
	dataDir   string
	closeSock func()
	startup   time.Duration // how long the first start took

	opMu sync.Mutex // serialises Start, Stop, Kill and close

	adminMu sync.Mutex
	admin   *sql.DB

	dbSeq atomic.Int64
}

// MySQL starts a private mariadbd for t and kills it when t ends. Use it
// for tests that kill or stop the server; other tests should share one
// server per package (see StartSharedMySQL) and call NewDatabase.
func MySQL(t testing.TB) *MySQLServer {
	t.Helper()
	s, err := newMySQL(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: mariadbd on %s\n%s", s.Addr(), s.proc.logTail())
		}
		s.close()
	})
	t.Logf("testenv: %s ready on %s in %s", s.version, s.Addr(), s.startup.Round(time.Millisecond))
	return s
}

// StartSharedMySQL starts a mariadbd meant to be shared by all tests of a
// package, from TestMain, where there is no testing.T. The returned stop
// function kills the server and removes its files; call it after m.Run.
// Tests isolate themselves with NewDatabase.
func StartSharedMySQL() (*MySQLServer, func(), error) {
	dir, err := os.MkdirTemp("", "txorder-mysql-")
	if err != nil {
		return nil, nil, fmt.Errorf("testenv: %w", err)
	}
	s, err := newMySQL(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("testenv: %w", err)
	}
	stop := func() {
		s.close()
		os.RemoveAll(dir)
	}
	return s, stop, nil
}

func newMySQL(dir string) (*MySQLServer, error) {
	begin := time.Now()
	bin, err := findBinary("mariadbd", "mariadb-server")
	if err != nil {
		return nil, err
	}
	version, err := binaryVersion(bin)
	if err != nil {
		return nil, err
	}
	tmpl, err := mysqlTemplate(bin, version)
	if err != nil {
		return nil, err
	}
	s := &MySQLServer{version: version, dataDir: filepath.Join(dir, "data")}
	if err := copyTree(tmpl, s.dataDir); err != nil {
		return nil, fmt.Errorf("copy mariadb template: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("mariadb tmpdir: %w", err)
	}
	sock, closeSock, err := shortSocketPath(dir, "mysqld.sock")
	if err != nil {
		return nil, err
	}
	s.closeSock = closeSock
	s.proc = &process{name: "mariadbd", path: bin, logPath: filepath.Join(dir, "mariadbd.log")}

	var lastErr error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			closeSock()
			return nil, err
		}
		s.proc.args = mysqlArgs(s.dataDir, dir, sock, s.port)
		lastErr = s.startAndWait()
		if lastErr == nil {
			s.startup = time.Since(begin)
			return s, nil
		}
		_ = s.proc.kill()
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	closeSock()
	return nil, lastErr
}

// mysqlArgs is the mariadbd command line. --no-defaults must come first; it
// keeps /etc/mysql and ~/.my.cnf out. Durability is as in production
// (flush the redo log at every commit, binary log off); the server speaks
// utf8mb4 and UTC.
func mysqlArgs(dataDir, dir, sock string, port int) []string {
	args := []string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--tmpdir=" + filepath.Join(dir, "tmp"),
		"--socket=" + sock,
		"--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
		"--innodb-flush-log-at-trx-commit=1",
		"--innodb-buffer-pool-load-at-startup=0",
		"--innodb-buffer-pool-dump-at-shutdown=0",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--default-time-zone=+00:00",
		"--max-connections=500",
	}
	args = append(args, rootUserArgs()...)
	return append(args, mysqlInnoDBArgs...)
}

func (s *MySQLServer) startAndWait() error {
	if err := s.proc.start(); err != nil {
		return err
	}
	return s.proc.waitReady(readyTimeout, s.ping)
}

// ping opens one connection as the txorder user and pings it.
func (s *MySQLServer) ping(ctx context.Context) error {
	cfg := s.config("")
	cfg.Timeout = time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return db.PingContext(ctx)
}

func (s *MySQLServer) config(dbName string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = mysqlUser
	cfg.Passwd = mysqlPassword
	cfg.Net = "tcp"
	cfg.Addr = s.Addr()
	cfg.DBName = dbName
	cfg.ParseTime = true
	cfg.Timeout = 5 * time.Second
	return cfg
}

// Pid is the server process's id (0 while it is stopped), e.g. to read
// its CPU time from /proc.
func (s *MySQLServer) Pid() int { return s.proc.pid() }

// Addr returns the server's TCP address, 127.0.0.1:port.
func (s *MySQLServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// DSN returns a go-sql-driver/mysql DSN for the database txorder, which
// always exists, as user txorder (all privileges) over TCP, with
// parseTime=true and a 5 s dial timeout.
func (s *MySQLServer) DSN() string { return s.DSNFor(mysqlDatabase) }

// DSNFor is DSN for the database db; an empty db selects none.
func (s *MySQLServer) DSNFor(db string) string { return s.config(db).FormatDSN() }

// Kill sends SIGKILL to mariadbd and returns once it has been reaped, so
// that clients see connections refused. Start brings it back.
func (s *MySQLServer) Kill() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.kill()
}

// Stop shuts mariadbd down gracefully (SIGTERM), killing it if it has not
// exited within 30 s.
func (s *MySQLServer) Stop() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.stop()
}

// Start starts mariadbd again after Kill or Stop, on the same port and data
// dir, and returns once it accepts connections (crash recovery included).
// It does nothing if the server is running.
func (s *MySQLServer) Start() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.proc.running() {
		return nil
	}
	// The port is ours only by convention: if someone took it while the
	// server was down, keep trying until the deadline.
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.startAndWait()
		if err == nil {
			return nil
		}
		_ = s.proc.kill()
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			return fmt.Errorf("testenv: restart mariadbd on %s: %w", s.Addr(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NewDatabase creates a database with a unique name on the server, drops it
// when t ends, and returns a DSN for it (see DSN).
func (s *MySQLServer) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t_%s_%d", identPart(t.Name(), 40), s.dbSeq.Add(1))
	db := s.adminDB()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
		t.Fatalf("testenv: create database %s on %s: %v", name, s.Addr(), err)
	}
	t.Cleanup(func() {
		if !s.proc.running() {
			return // killed by the test and not restarted; the server's own cleanup removes the files
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("testenv: drop database %s on %s: %v", name, s.Addr(), err)
		}
	})
	return s.DSNFor(name)
}

// adminDB is a pool with no default database, for CREATE/DROP DATABASE.
func (s *MySQLServer) adminDB() *sql.DB {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.admin == nil {
		cfg := s.config("")
		// DROP DATABASE waits for metadata locks that a test may still hold;
		// fail the cleanup after a while instead of hanging it (the server's
		// default is a day).
		cfg.Params = map[string]string{"lock_wait_timeout": "10"}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			panic(err) // the config is ours and always valid
		}
		s.admin = sql.OpenDB(conn)
		s.admin.SetMaxIdleConns(2)
		s.admin.SetConnMaxIdleTime(time.Minute)
	}
	return s.admin
}

// close kills the server (its files are thrown away, so there is nothing to
// shut down cleanly) and releases what the handle holds.
func (s *MySQLServer) close() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	_ = s.proc.kill()
	s.adminMu.Lock()
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	s.adminMu.Unlock()
	s.closeSock()
}

// identPart turns a test name into something safe inside an unquoted-looking
// identifier: letters, digits and underscores, at most n bytes.
func identPart(name string, n int) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= n {
			break
		}
	}
	return b.String()
}

// Pause stops the server with SIGSTOP: it keeps its connections and port
// but answers nothing, as a hung or partitioned server would. Resume (or
// Kill) ends it.
func (s *MySQLServer) Pause() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.signal(syscall.SIGSTOP)
}

// Resume continues a paused server.
func (s *MySQLServer) Resume() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.signal(syscall.SIGCONT)
}
