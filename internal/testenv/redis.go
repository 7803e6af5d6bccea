package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisDatabases is the number of logical databases each server has. DB 0
// is left alone; NewDB hands out 1..redisDatabases-1.
const redisDatabases = 1024

// RedisServer is a redis-server process owned by a test binary, listening
// on 127.0.0.1 with its data in a temporary directory. Every write is in
// the append-only file and fsynced (appendonly yes, appendfsync always) and
// RDB snapshots are off, so a killed server started again has every
// acknowledged write.
type RedisServer struct {
	proc    *process
	version string
	port    int
	startup time.Duration

	opMu sync.Mutex // serialises Start, Stop, Kill and close

	dbMu    sync.Mutex
	freeDBs []int // numbers not handed out
}

// Redis starts a private redis-server for t and kills it when t ends. Use
// it for tests that kill or stop the server; other tests should share one
// server per package (see StartSharedRedis) and call NewDB.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	s, err := newRedis(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: redis-server on %s\n%s", s.Addr(), s.proc.logTail())
		}
		s.close()
	})
	t.Logf("testenv: %s ready on %s in %s", s.version, s.Addr(), s.startup.Round(time.Millisecond))
	return s
}

// StartSharedRedis starts a redis-server meant to be shared by all tests of
// a package, from TestMain. The returned stop function kills the server
// and removes its files; call it after m.Run. Tests isolate themselves with
// NewDB.
func StartSharedRedis() (*RedisServer, func(), error) {
	dir, err := os.MkdirTemp("", "txorder-redis-")
	if err != nil {
		return nil, nil, fmt.Errorf("testenv: %w", err)
	}
	s, err := newRedis(dir)
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

func newRedis(dir string) (*RedisServer, error) {
	begin := time.Now()
	bin, err := findBinary("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	version, err := binaryVersion(bin)
	if err != nil {
		return nil, err
	}
	s := &RedisServer{version: version}
	for db := 1; db < redisDatabases; db++ {
		s.freeDBs = append(s.freeDBs, db)
	}
	s.proc = &process{name: "redis-server", path: bin, logPath: filepath.Join(dir, "redis.log")}

	var lastErr error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		s.proc.args = redisArgs(dir, s.port)
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
	return nil, lastErr
}

// redisArgs is the redis-server command line: no config file, everything
// as options, logging to stdout (which goes to the log file).
func redisArgs(dir string, port int) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--save", "",
		"--daemonize", "no",
		"--databases", strconv.Itoa(redisDatabases),
		"--logfile", "",
	}
}

func (s *RedisServer) startAndWait() error {
	if err := s.proc.start(); err != nil {
		return err
	}
	return s.proc.waitReady(readyTimeout, s.ping)
}

// ping succeeds once the server answers PONG, which it does only after
// loading the append-only file.
func (s *RedisServer) ping(ctx context.Context) error {
	r, err := redisDo(ctx, s.Addr(), []string{"PING"})
	if err != nil {
		return err
	}
	if r[0] != "PONG" {
		return fmt.Errorf("PING answered %q", r[0])
	}
	return nil
}

// Pid is the server process's id (0 while it is stopped), e.g. to read
// its CPU time from /proc.
func (s *RedisServer) Pid() int { return s.proc.pid() }

// Addr returns the server's TCP address, 127.0.0.1:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Kill sends SIGKILL to redis-server and returns once it has been reaped,
// so that clients see connections refused. Start brings it back.
func (s *RedisServer) Kill() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.kill()
}

// Stop shuts redis-server down gracefully (SIGTERM), killing it if it has
// not exited within 30 s.
func (s *RedisServer) Stop() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.stop()
}

// Start starts redis-server again after Kill or Stop, on the same port and
// dir, and returns once it has loaded its append-only file and answers
// PING. It does nothing if the server is running.
func (s *RedisServer) Start() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.proc.running() {
		return nil
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.startAndWait()
		if err == nil {
			return nil
		}
		_ = s.proc.kill()
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			return fmt.Errorf("testenv: restart redis-server on %s: %w", s.Addr(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NewDB reserves a logical database (1..1023) for t and returns its number,
// for redis.Options.DB. The database is empty; it is flushed and handed
// out again when t ends. Tests running in parallel get distinct numbers.
func (s *RedisServer) NewDB(t testing.TB) int {
	t.Helper()
	s.dbMu.Lock()
	if len(s.freeDBs) == 0 {
		s.dbMu.Unlock()
		t.Fatalf("testenv: all %d redis databases on %s are in use", redisDatabases-1, s.Addr())
	}
	db := s.freeDBs[0]
	s.freeDBs = s.freeDBs[1:]
	s.dbMu.Unlock()

	// A database may still hold keys if its last flush was missed.
	if err := s.flushDB(db); err != nil {
		t.Fatalf("testenv: flush redis db %d on %s: %v", db, s.Addr(), err)
	}
	t.Cleanup(func() {
		if !s.proc.running() {
			return // killed by the test; the number is not reused
		}
		if err := s.flushDB(db); err != nil {
			t.Errorf("testenv: flush redis db %d on %s: %v", db, s.Addr(), err)
			return
		}
		s.dbMu.Lock()
		s.freeDBs = append(s.freeDBs, db)
		s.dbMu.Unlock()
	})
	return db
}

func (s *RedisServer) flushDB(db int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := redisDo(ctx, s.Addr(), []string{"SELECT", strconv.Itoa(db)}, []string{"FLUSHDB"})
	return err
}

// close kills the server; its files are thrown away.
func (s *RedisServer) close() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	_ = s.proc.kill()
}

// Pause stops the server with SIGSTOP: it keeps its connections and port
// but answers nothing, as a hung or partitioned server would. Resume (or
// Kill) ends it.
func (s *RedisServer) Pause() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.signal(syscall.SIGSTOP)
}

// Resume continues a paused server.
func (s *RedisServer) Resume() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.proc.signal(syscall.SIGCONT)
}
