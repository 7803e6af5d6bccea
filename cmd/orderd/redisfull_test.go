package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRedisFullRefusesOrders: Redis at its maxmemory (noeviction). While
// MySQL and RocketMQ work, orders are stored as usual (201), their keys
// unclaimed. Once RocketMQ is down every order needs the spill queue:
// orderd answers a plain 503 (not recorded, not "may have been
// recorded"), records nothing anywhere, reports Redis full in readiness
// and its memory in /metrics; once Redis has room the same request is
// queued.
func TestRedisFullRefusesOrders(t *testing.T) {
	s := newStack(t, stackOptions{privateRedis: true})
	m := s.orderd()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr})
	defer rdb.Close()

	// maxmemory just above what Redis uses now, then fill it.
	used := metricValue(t, m.Addr(), "txorder_redis_memory_used_bytes")
	if used <= 0 || metricValue(t, m.Addr(), "txorder_redis_memory_max_bytes") != 0 {
		t.Fatalf("metrics before: used %v, max %v; want used > 0 and no limit", used,
			metricValue(t, m.Addr(), "txorder_redis_memory_max_bytes"))
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(int64(used)+2<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	filler := strings.Repeat("x", 4<<10)
	for i := 0; ; i++ {
		if err := rdb.Set(ctx, fmt.Sprintf("filler:%d", i), filler, 0).Err(); err != nil {
			if !strings.HasPrefix(err.Error(), "OOM ") {
				t.Fatal(err)
			}
			break
		}
	}
	maxBytes := metricValue(t, m.Addr(), "txorder_redis_memory_max_bytes")
	usedBytes := metricValue(t, m.Addr(), "txorder_redis_memory_used_bytes")
	t.Logf("redis memory: used %.0f of %.0f bytes", usedBytes, maxBytes)
	if maxBytes <= 0 || usedBytes < 0.95*maxBytes {
		t.Errorf("metrics when full: used %v of %v", usedBytes, maxBytes)
	}

	stored := place(t, m.Addr(), "full-stored")
	if stored.code != http.StatusCreated || s.rowStatus(stored.id) != "PENDING_PAYMENT" {
		t.Fatalf("place with Redis full and MySQL, RocketMQ up = %+v, want 201 stored", stored)
	}
	if again := place(t, m.Addr(), "full-stored"); again.code != http.StatusOK || again.id != stored.id {
		t.Errorf("retry with Redis full = %+v, want 200 with %s (MySQL's key)", again, stored.id)
	}

	s.mq.StopNameServer()
	s.mq.StopBroker()
	r := getReadyz(t, m.Addr())
	t.Logf("readyz when full: %d %s redis=%+v", r.code, r.Status, r.Checks["redis"])
	if rc := r.Checks["redis"]; rc.Status != "down" || !strings.Contains(rc.Error, "redis is full") {
		t.Errorf("readyz redis = %+v, want down: redis is full", rc)
	}
	if r.code != http.StatusServiceUnavailable {
		t.Errorf("readyz = %d, want 503: neither RocketMQ nor Redis can take an order's message", r.code)
	}

	code, body := placeRaw(t, m.Addr(), "full-1")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "could not be recorded durably") {
		t.Fatalf("place with Redis full = %d %s, want 503 not recorded", code, body)
	}
	var problem struct{ Detail string }
	_ = json.Unmarshal([]byte(body), &problem)
	if strings.Contains(problem.Detail, "may or may not") {
		t.Errorf("detail %q: an OOM refusal wrote nothing, the outcome is known", problem.Detail)
	}
	if pending, dead := s.spillDepth(t); pending != 0 || dead != 0 || s.rows(t) != 1 {
		t.Fatalf("after the refusal: spill %d/%d, rows %d; want nothing recorded (only the first order's row)", pending, dead, s.rows(t))
	}

	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if p := place(t, m.Addr(), "full-1"); p.code != http.StatusAccepted || p.status != "QUEUED" {
		t.Fatalf("retry once Redis has room = %+v, want 202 QUEUED", p)
	}
	if r := getReadyz(t, m.Addr()); r.Checks["redis"].Status != "up" || r.code != http.StatusOK {
		t.Errorf("readyz after = %d %+v", r.code, r.Checks["redis"])
	}
}
