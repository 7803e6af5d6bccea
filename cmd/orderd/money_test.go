package main

// Issue 12: money and identity paths against hostile and careless clients,
// through orderd's HTTP API on real MariaDB, Redis and rmqtest.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// call sends one request with the given API key ("" = none) and returns
// the status, the headers and the body.
func call(t *testing.T, method, url, apiKey, body string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

// placeAs places body under key with apiKey and returns the status and the
// order id answered (if any).
func placeAs(t *testing.T, addr, apiKey, key, body string) (int, string) {
	t.Helper()
	code, _, b := call(t, http.MethodPost, "http://"+addr+"/v1/orders", apiKey, body, "Idempotency-Key", key)
	var o struct{ ID string }
	_ = json.Unmarshal(b, &o)
	return code, o.ID
}

// TestIdempotencyKeysAreCaseSensitive (issue 12, finding 2): keys that
// differ only in case are different keys, in Redis and in MySQL alike.
// They used to collide in MySQL (ascii_general_ci): the variant with the
// same body got the first order back (200), the one with another body a
// 409, and each sent a half message that was rolled back.
func TestIdempotencyKeysAreCaseSensitive(t *testing.T) {
	s := newStack(t, stackOptions{})
	m := s.orderd()
	other := strings.Replace(orderBody, `"c-1"`, `"c-2"`, 1)
	keys := []struct{ key, body string }{{"K-CaseKey", orderBody}, {"k-casekey", orderBody}, {"K-CASEKEY", other}}
	ids := map[string]string{}
	for _, k := range keys {
		code, id := placeAs(t, m.Addr(), testKey, k.key, k.body)
		if code != http.StatusCreated || id == "" {
			t.Fatalf("place %q = %d %s, want 201 with a new order", k.key, code, id)
		}
		for prev, pid := range ids {
			if pid == id {
				t.Fatalf("%q answered the order of %q", k.key, prev)
			}
		}
		ids[k.key] = id
	}
	// Each key replays its own order, from Redis and, once Redis has
	// forgotten the keys, from MySQL.
	replay := func(round string) {
		t.Helper()
		for _, k := range keys {
			if code, id := placeAs(t, m.Addr(), testKey, k.key, k.body); code != http.StatusOK || id != ids[k.key] {
				t.Fatalf("%s: replay of %q = %d %s, want 200 with %s", round, k.key, code, id, ids[k.key])
			}
		}
	}
	replay("from redis")
	// One half message per order, none rolled back (a replay from Redis
	// sends nothing).
	if c := s.orderTx(); c.Pending+c.Committed != len(keys) || c.RolledBack != 0 {
		t.Fatalf("transactions %+v, want %d open and none rolled back", c, len(keys))
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	for _, k := range keys {
		if err := rdb.Del(context.Background(), s.cfg.Redis.KeyPrefix+"idem:demo:"+k.key).Err(); err != nil {
			t.Fatal(err)
		}
	}
	replay("from mysql")
	if got := s.rows(t); got != len(keys) {
		t.Fatalf("orders = %d, want %d", got, len(keys))
	}
	var stored int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM idempotency_keys WHERE idem_key IN ('K-CaseKey', 'k-casekey', 'K-CASEKEY')`).Scan(&stored); err != nil || stored != 3 {
		t.Fatalf("idempotency keys stored = %d (%v), want 3", stored, err)
	}
}
