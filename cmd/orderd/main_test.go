package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/testenv"
)

var (
	sharedMySQL *testenv.MySQLServer
	sharedRedis *testenv.RedisServer
)

func TestMain(m *testing.M) {
	my, stopMySQL, err := testenv.StartSharedMySQL()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rd, stopRedis, err := testenv.StartSharedRedis()
	if err != nil {
		stopMySQL()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedMySQL, sharedRedis = my, rd
	code := m.Run()
	stopRedis()
	stopMySQL()
	os.Exit(code)
}

const testKey = "orderd-test-key-0123456789"

// testConfig points orderd at a fresh database and Redis DB of the shared
// servers, on 127.0.0.1:0, through the same loader production uses.
func testConfig(t *testing.T) configs.Orderd {
	t.Helper()
	dsn, err := mysql.ParseDSN(sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.LoadOrderd("../../configs/orderd.yaml", []string{
		"TXORDER_HTTP__ADDR=127.0.0.1:0",
		"TXORDER_MYSQL__ADDR=" + dsn.Addr,
		"TXORDER_MYSQL__USER=" + dsn.User,
		"TXORDER_MYSQL__PASSWORD=" + dsn.Passwd,
		"TXORDER_MYSQL__DATABASE=" + dsn.DBName,
		"TXORDER_REDIS__ADDR=" + sharedRedis.Addr(),
		fmt.Sprintf("TXORDER_REDIS__DB=%d", sharedRedis.NewDB(t)),
		"TXORDER_ROCKETMQ__NAME_SERVERS=127.0.0.1:1",
		"TXORDER_AUTH__API_KEYS=demo:" + testKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func open(t *testing.T, cfg configs.Orderd) *Main {
	t.Helper()
	m := NewMain(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func place(t *testing.T, addr, key string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/orders", strings.NewReader(
		`{"customer_id":"c-1","currency":"EUR","items":[{"sku":"S","name":"Widget","quantity":1,"unit_price":100}]}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res, body
}

func TestOrderdServes(t *testing.T) {
	m := open(t, testConfig(t))
	res, body := place(t, m.Addr(), "k1")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d %v", res.StatusCode, body)
	}
	get, _ := http.NewRequest(http.MethodGet, "http://"+m.Addr()+"/v1/orders/"+body["id"].(string), nil)
	get.Header.Set("Authorization", "Bearer "+testKey)
	gres, err := http.DefaultClient.Do(get)
	if err != nil || gres.StatusCode != http.StatusOK {
		t.Fatalf("GET = %v %v", gres, err)
	}
	gres.Body.Close()

	rres, err := http.Get("http://" + m.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer rres.Body.Close()
	var ready struct {
		Checks map[string]struct{ Status string }
	}
	if err := json.NewDecoder(rres.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	if rres.StatusCode != 200 || ready.Checks["mysql"].Status != "up" || ready.Checks["redis"].Status != "up" ||
		ready.Checks["rocketmq"].Status != "down" {
		t.Fatalf("readyz = %d %+v, want mysql and redis up, rocketmq (nothing on 127.0.0.1:1) down", rres.StatusCode, ready.Checks)
	}
}

// TestGracefulShutdown: Close lets a request that is in flight finish
// (here one blocked inside MySQL on a table lock) and refuses new ones.
func TestGracefulShutdown(t *testing.T) {
	cfg := testConfig(t)
	m := open(t, cfg)
	db, err := sql.Open("mysql", cfg.MySQL.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	locker, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	if _, err := locker.ExecContext(ctx, `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	inflight := make(chan int, 1)
	go func() {
		res, _ := place(t, m.Addr(), "inflight")
		inflight <- res.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		_ = db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO orders%'`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the in-flight request never reached MySQL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	addr := m.Addr()
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	// New connections are refused once Shutdown closed the listener.
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			break
		}
		c.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := locker.ExecContext(ctx, `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	if code := <-inflight; code != http.StatusCreated {
		t.Fatalf("in-flight request finished with %d, want 201", code)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("orders = %d (%v), want the in-flight one stored", n, err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.APIKeys = ""
	m := NewMain(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err := m.Open(context.Background())
	_ = m.Close()
	if err == nil || !strings.Contains(err.Error(), "auth.api_keys") {
		t.Fatalf("Open without API keys: err = %v, want one naming auth.api_keys", err)
	}
}
