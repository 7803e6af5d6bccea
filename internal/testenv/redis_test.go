package testenv

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

func redisCmd(t *testing.T, addr string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := redisDo(ctx, addr, args)
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return r[0]
}

func TestRedisKillStartKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	srv := Redis(t)
	addr := srv.Addr()
	redisCmd(t, addr, "SET", "k", "1")

	if err := srv.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	if _, err := redisDo(ctx, addr, []string{"PING"}); err == nil {
		t.Fatal("PING after Kill succeeded, want an error")
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("PING after Kill took %s, want < 2s", took)
	}

	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := redisCmd(t, addr, "GET", "k"); got != "1" {
		t.Errorf("GET k after restart = %q, want %q", got, "1")
	}

	redisCmd(t, addr, "SET", "k", "2")
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if got := srv.Addr(); got != addr {
		t.Errorf("Addr after restart = %s, want %s", got, addr)
	}
	if got := redisCmd(t, addr, "GET", "k"); got != "2" {
		t.Errorf("GET k after stop/start = %q, want %q", got, "2")
	}
}

func TestRedisSettings(t *testing.T) {
	t.Parallel()
	addr := sharedRedis.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct{ key, want string }{
		{"appendonly", "yes"},
		{"appendfsync", "always"},
		{"save", ""},
		{"databases", strconv.Itoa(redisDatabases)},
		{"bind", "127.0.0.1"},
	} {
		r, err := redisDo(ctx, addr, []string{"CONFIG", "GET", c.key})
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", c.key, err)
		}
		got := strings.TrimPrefix(r[0], c.key+"\n")
		if got != c.want {
			t.Errorf("%s = %q, want %q", c.key, got, c.want)
		}
	}
}

func TestRedisNewDBIsolation(t *testing.T) {
	t.Parallel()
	addr := sharedRedis.Addr()
	var first int
	t.Run("pair", func(t *testing.T) {
		a, b := sharedRedis.NewDB(t), sharedRedis.NewDB(t)
		if a == b {
			t.Fatalf("NewDB returned %d twice", a)
		}
		if a == 0 || b == 0 {
			t.Fatalf("NewDB returned db 0 (a=%d b=%d), want it left alone", a, b)
		}
		first = a
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := redisDo(ctx, addr, []string{"SELECT", strconv.Itoa(a)}, []string{"SET", "k", "a"}); err != nil {
			t.Fatal(err)
		}
		r, err := redisDo(ctx, addr, []string{"SELECT", strconv.Itoa(b)}, []string{"GET", "k"})
		if err != nil {
			t.Fatal(err)
		}
		if r[1] != "(nil)" {
			t.Errorf("GET k in db %d = %q, want nil: the databases are not isolated", b, r[1])
		}
	})

	// The subtest's cleanup has flushed its databases.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := redisDo(ctx, addr, []string{"SELECT", strconv.Itoa(first)}, []string{"DBSIZE"})
	if err != nil {
		t.Fatal(err)
	}
	if r[1] != "0" {
		t.Errorf("DBSIZE of db %d after cleanup = %s, want 0", first, r[1])
	}
}
