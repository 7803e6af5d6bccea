package main

// Issue 12: money and identity paths against hostile and careless clients,
// through orderd's HTTP API on real MariaDB, Redis and rmqtest.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/payment"
)

// call sends one request with the given API key ("" = none) and returns
// the status, the headers and the body.
func call(t testing.TB, method, url, apiKey, body string, headers ...string) (int, http.Header, []byte) {
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
func placeAs(t testing.TB, addr, apiKey, key, body string) (int, string) {
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

const (
	otherKey = "orderd-other-key-0123456789"
	adminKey = "orderd-admin-key-0123456789"
)

// ownerEnv configures a second client ("other") and an admin ("ops").
var ownerEnv = []string{
	"TXORDER_AUTH__API_KEYS=demo:" + testKey + ",other:" + otherKey,
	"TXORDER_AUTH__ADMIN_KEYS=ops:" + adminKey,
}

// TestOrdersBelongToTheirClient (issue 12, finding 4): an order is read by
// the client that placed it and by admin keys; any other client gets the
// 404 of a missing order. That holds for orders stored in MySQL, cached
// in Redis while MySQL is down, queued while RocketMQ is down, and for the
// latter two after they reach MySQL: the owner travels with the order.
func TestOrdersBelongToTheirClient(t *testing.T) {
	s := newStack(t, stackOptions{privateMySQL: true, env: ownerEnv})
	m := s.orderd()
	base := "http://" + m.Addr() + "/v1/orders/"
	missing, _, missingBody := call(t, http.MethodGet, base+"0190b7a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b", otherKey, "")
	if missing != http.StatusNotFound {
		t.Fatalf("GET of a missing order = %d, want 404", missing)
	}
	// readable checks who may read id, and that another client's answer
	// looks exactly like the one for a missing order.
	readable := func(when, id, wantStatus string) {
		t.Helper()
		for _, who := range []struct {
			name, key string
			owner     bool
		}{{"owner", testKey, true}, {"admin", adminKey, true}, {"other client", otherKey, false}} {
			code, _, body := call(t, http.MethodGet, base+id, who.key, "")
			var o struct{ ID, Status string }
			_ = json.Unmarshal(body, &o)
			switch {
			case who.owner && (code != http.StatusOK || o.ID != id || o.Status != wantStatus):
				t.Fatalf("%s: GET by the %s = %d %s, want 200 %s", when, who.name, code, body, wantStatus)
			case !who.owner && code != http.StatusNotFound:
				t.Fatalf("%s: GET by the %s = %d %s, want 404", when, who.name, code, body)
			case !who.owner && stripRequestID(body) != stripRequestID(missingBody):
				t.Fatalf("%s: another client's 404 %s differs from a missing order's %s", when, body, missingBody)
			}
		}
	}
	stored := place(t, m.Addr(), "own-stored")
	if stored.code != http.StatusCreated {
		t.Fatalf("place = %+v", stored)
	}
	readable("stored", stored.id, "PENDING_PAYMENT")

	if err := s.my.Kill(); err != nil {
		t.Fatal(err)
	}
	cached := place(t, m.Addr(), "own-cached")
	if cached.code != http.StatusAccepted || cached.status != "ACCEPTED" {
		t.Fatalf("place with MySQL down = %+v, want 202 ACCEPTED", cached)
	}
	readable("cached", cached.id, "ACCEPTED")
	if err := s.my.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the cached order stored in MySQL", func() bool { return s.rowStatus(cached.id) != "" })

	s.mq.StopNameServer()
	s.mq.StopBroker()
	queued := place(t, m.Addr(), "own-queued")
	if queued.code != http.StatusAccepted || queued.status != "QUEUED" {
		t.Fatalf("place with RocketMQ down = %+v, want 202 QUEUED", queued)
	}
	readable("queued", queued.id, "QUEUED")
	if err := s.mq.StartNameServer(); err != nil {
		t.Fatal(err)
	}
	if err := s.mq.StartBroker(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the queued order placed", func() bool { return s.rowStatus(queued.id) != "" })

	for _, p := range []placed{stored, cached, queued} {
		readable("in mysql", p.id, "PENDING_PAYMENT")
		var owner string
		if err := s.db.QueryRow(`SELECT client_id FROM orders WHERE id = ?`, p.id).Scan(&owner); err != nil || owner != "demo" {
			t.Fatalf("owner of %s (%s) = %q (%v), want demo", p.id, p.key, owner, err)
		}
	}
	// The other client cannot see an order through an idempotency key
	// either: its keys are its own.
	if code, id := placeAs(t, m.Addr(), otherKey, "own-stored", orderBody); code != http.StatusCreated || id == stored.id {
		t.Fatalf("other client with the owner's key = %d %s, want its own new order", code, id)
	}
	// Admin keys read, they do not place.
	if code, _, body := call(t, http.MethodPost, "http://"+m.Addr()+"/v1/orders", adminKey, orderBody, "Idempotency-Key", "admin-1"); code != http.StatusForbidden {
		t.Fatalf("POST with an admin key = %d %s, want 403", code, body)
	}
}

// stripRequestID drops the per-request fields of a problem body.
func stripRequestID(body []byte) string {
	var p map[string]any
	if json.Unmarshal(body, &p) != nil {
		return string(body)
	}
	delete(p, "request_id")
	delete(p, "instance")
	b, _ := json.Marshal(p)
	return string(b)
}

// metric returns the value of one sample line of orderd's /metrics ("" if
// absent), e.g. metric(t, addr, `txorder_http_shed_total`).
func metric(t testing.TB, addr, series string) string {
	t.Helper()
	_, _, body := call(t, http.MethodGet, "http://"+addr+"/metrics", "", "")
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestRateLimitPerClient (issue 12, finding 5): a client beyond its burst
// gets 429 with Retry-After and a problem body, nothing of those requests
// is recorded, and another client is not affected.
func TestRateLimitPerClient(t *testing.T) {
	// One token every 10 s: no request of this test can earn a second one.
	s := newStack(t, stackOptions{env: append(ownerEnv, "TXORDER_LIMITS__RATE=0.1", "TXORDER_LIMITS__BURST=10")})
	m := s.orderd()
	const sent = 25
	created, limited := 0, 0
	for i := range sent {
		key := "rl-" + strconv.Itoa(i)
		code, hdr, body := call(t, http.MethodPost, "http://"+m.Addr()+"/v1/orders", testKey, orderBody, "Idempotency-Key", key)
		switch code {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			limited++
			var p struct{ Code, Type string }
			_ = json.Unmarshal(body, &p)
			// A token comes every 10 s: the wait is 1 to 10 whole seconds.
			ra, err := strconv.Atoi(hdr.Get("Retry-After"))
			if p.Code != "rate_limited" || hdr.Get("Content-Type") != "application/problem+json" || err != nil || ra < 1 || ra > 10 {
				t.Fatalf("429 = %s %v, want a rate_limited problem with Retry-After in seconds", body, hdr)
			}
			// Nothing was claimed for a refused request: the key is free.
			rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
			n, err := rdb.Exists(context.Background(), s.cfg.Redis.KeyPrefix+"idem:demo:"+key).Result()
			rdb.Close()
			if err != nil || n != 0 {
				t.Fatalf("refused request's key claimed in Redis (%d, %v)", n, err)
			}
		default:
			t.Fatalf("request %d = %d %s", i, code, body)
		}
	}
	if created < 10 || created > 11 || created+limited != sent {
		t.Fatalf("%d created, %d limited of %d, want the burst of 10 created and the rest 429", created, limited, sent)
	}
	if got := s.rows(t); got != created {
		t.Fatalf("orders = %d, want %d: a refused request records nothing", got, created)
	}
	// The other client has its own bucket.
	for i := range 10 {
		if code, _ := placeAs(t, m.Addr(), otherKey, "other-"+strconv.Itoa(i), orderBody); code != http.StatusCreated {
			t.Fatalf("other client's request %d = %d, want 201", i, code)
		}
	}
	if got, want := metric(t, m.Addr(), `txorder_http_rate_limited_total{client="demo"}`), strconv.Itoa(limited); got != want {
		t.Fatalf("rate_limited_total{demo} = %q, want %s", got, want)
	}
	if got := metric(t, m.Addr(), `txorder_http_rate_limited_total{client="other"}`); got != "0" {
		t.Fatalf("rate_limited_total{other} = %q, want 0", got)
	}
	if got := metric(t, m.Addr(), `txorder_http_problems_total{code="rate_limited",route="/v1/orders"}`); got != strconv.Itoa(limited) {
		t.Fatalf("problems_total{rate_limited} = %q, want %d", got, limited)
	}
}

// TestInFlightBound (issue 12, finding 5): with limits.max_in_flight
// requests held up in MySQL, the next one is answered 503 overloaded with
// Retry-After at once instead of queueing, probes still answer, and the
// held requests complete.
func TestInFlightBound(t *testing.T) {
	s := newStack(t, stackOptions{env: []string{"TXORDER_LIMITS__MAX_IN_FLIGHT=2"}})
	// Long enough for the held reads to outlast the check below.
	s.cfg.MySQL.Timeout = 10 * time.Second
	m := s.orderd()
	p := place(t, m.Addr(), "held")
	if p.code != http.StatusCreated {
		t.Fatalf("place = %+v", p)
	}
	ctx := context.Background()
	locker, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	if _, err := locker.ExecContext(ctx, `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	unlocked := false
	defer func() {
		if !unlocked {
			_, _ = locker.ExecContext(ctx, `UNLOCK TABLES`)
		}
	}()
	held := make(chan int, 2)
	for range 2 {
		go func() {
			code, _ := getOrder(t, m.Addr(), p.id)
			held <- code
		}()
	}
	waitFor(t, 10*time.Second, "two reads waiting on the table lock", func() bool {
		return metric(t, m.Addr(), "txorder_http_in_flight") == "2"
	})
	code, hdr, body := call(t, http.MethodGet, "http://"+m.Addr()+"/v1/orders/"+p.id, testKey, "")
	var prob struct{ Code string }
	_ = json.Unmarshal(body, &prob)
	if code != http.StatusServiceUnavailable || prob.Code != "overloaded" || hdr.Get("Retry-After") == "" {
		t.Fatalf("third request = %d %s %v, want 503 overloaded with Retry-After", code, body, hdr)
	}
	if code, _, _ := call(t, http.MethodGet, "http://"+m.Addr()+"/healthz", "", ""); code != http.StatusOK {
		t.Fatalf("/healthz while saturated = %d", code)
	}
	if _, err := locker.ExecContext(ctx, `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	unlocked = true
	for range 2 {
		if code := <-held; code != http.StatusOK {
			t.Fatalf("held request = %d, want 200", code)
		}
	}
	if got := metric(t, m.Addr(), "txorder_http_shed_total"); got != "1" {
		t.Fatalf("shed_total = %q, want 1", got)
	}
}

// TestIdempotencyKeysExpire (issue 12, finding 5): orderd deletes
// idempotency keys older than redis.idempotency_ttl from MySQL, and keeps
// the orders.
func TestIdempotencyKeysExpire(t *testing.T) {
	s := newStack(t, stackOptions{env: []string{"TXORDER_IDEMPOTENCY__SWEEP_INTERVAL=100ms"}})
	m := s.orderd()
	old, recent := place(t, m.Addr(), "old-key"), place(t, m.Addr(), "recent-key")
	if old.code != http.StatusCreated || recent.code != http.StatusCreated {
		t.Fatalf("place = %+v %+v", old, recent)
	}
	if _, err := s.db.Exec(`UPDATE idempotency_keys SET created_at = created_at - INTERVAL 25 HOUR WHERE order_id = ?`, old.id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the old key deleted", func() bool {
		var n int
		_ = s.db.QueryRow(`SELECT COUNT(*) FROM idempotency_keys WHERE order_id = ?`, old.id).Scan(&n)
		return n == 0
	})
	var keys int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM idempotency_keys`).Scan(&keys); err != nil || keys != 1 {
		t.Fatalf("keys = %d (%v), want the recent one kept", keys, err)
	}
	if s.rows(t) != 2 || s.rowStatus(old.id) != "PENDING_PAYMENT" {
		t.Fatalf("orders changed by the expiry")
	}
	if code, _ := getOrder(t, m.Addr(), old.id); code != http.StatusOK {
		t.Fatalf("GET of the order whose key expired = %d, want 200 (its owner is kept)", code)
	}
	// The count is taken after the delete commits: wait for it too.
	waitFor(t, 10*time.Second, "keys_expired_total = 1", func() bool {
		return metric(t, m.Addr(), "txorder_idempotency_keys_expired_total") == "1"
	})
}

// TestHostileInput (issue 12, findings 6–10) sends what a careless or
// hostile client or a forging provider would, through orderd on real
// MariaDB, Redis and rmqtest: every request is refused with the documented
// problem, and nothing is written anywhere — no order, no key claimed in
// Redis, no half message, no payment.
func TestHostileInput(t *testing.T) {
	s := newStack(t, stackOptions{env: ownerEnv})
	m := s.orderd()
	base := "http://" + m.Addr()
	paid := place(t, m.Addr(), "the-one-order")
	if paid.code != http.StatusCreated {
		t.Fatalf("place = %+v", paid)
	}
	type problem struct {
		Code, Detail string
		Errors       []struct{ Field, Rule string }
	}
	expect := func(t *testing.T, what string, code int, hdr http.Header, body []byte, status int, wantCode, wantInDetail string) problem {
		t.Helper()
		var p problem
		_ = json.Unmarshal(body, &p)
		if code != status || p.Code != wantCode || hdr.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(p.Detail, wantInDetail) {
			t.Fatalf("%s = %d %s, want %d %s mentioning %q", what, code, body, status, wantCode, wantInDetail)
		}
		return p
	}
	order := func(customer, sku, name, currency string) string {
		b, _ := json.Marshal(map[string]any{"customer_id": customer, "currency": currency,
			"items": []map[string]any{{"sku": sku, "name": name, "quantity": 1, "unit_price": 100}}})
		return string(b)
	}
	notify := func(body string, signatures ...string) (int, http.Header, []byte) {
		if signatures == nil {
			signatures = []string{payment.Sign(webhookSecret, time.Now(), []byte(body))}
		}
		var hdrs []string
		for _, sig := range signatures {
			hdrs = append(hdrs, payment.HeaderSignature, sig)
		}
		return call(t, http.MethodPost, base+"/v1/payments/notify", "", body, hdrs...)
	}
	n := 0
	post := func(body string, headers ...string) (int, http.Header, []byte) {
		n++
		if headers == nil {
			headers = []string{"Idempotency-Key", "hostile-" + strconv.Itoa(n)}
		}
		return call(t, http.MethodPost, base+"/v1/orders", testKey, body, headers...)
	}

	t.Run("finding 6: invisible and bidirectional characters", func(t *testing.T) {
		for _, tc := range []struct{ name, body, field string }{
			{"right-to-left override", order("c-1", "SKU-1", "a\u202Egnp.exe", "EUR"), "items[0].name"},
			{"line separator", order("a\u2028b", "SKU-1", "Widget", "EUR"), "customer_id"},
			{"only a zero-width space", order("c-1", "\u200b", "Widget", "EUR"), "items[0].sku"},
		} {
			code, hdr, body := post(tc.body)
			p := expect(t, tc.name, code, hdr, body, http.StatusUnprocessableEntity, "validation_failed", tc.field)
			if len(p.Errors) != 1 || p.Errors[0].Field != tc.field || p.Errors[0].Rule != "printable" {
				t.Fatalf("%s: errors %+v, want %s printable", tc.name, p.Errors, tc.field)
			}
		}
	})
	t.Run("finding 7: codes that are not money", func(t *testing.T) {
		for _, cur := range []string{"XXX", "XTS", "XAU", "XDR"} {
			code, hdr, body := post(order("c-1", "SKU-1", "Widget", cur))
			expect(t, cur, code, hdr, body, http.StatusUnprocessableEntity, "validation_failed", "currency")
			pay := `{"provider_txn_id":"tx-` + cur + `","order_id":"` + paid.id + `","amount":100,"currency":"` + cur + `"}`
			code, hdr, body = notify(pay)
			expect(t, "payment in "+cur, code, hdr, body, http.StatusBadRequest, "malformed_body", "currency")
		}
	})
	t.Run("finding 8: readyz details for admins only", func(t *testing.T) {
		s.mq.StopNameServer()
		defer func() {
			if err := s.mq.StartNameServer(); err != nil {
				t.Fatal(err)
			}
		}()
		nameServer := s.cfg.RocketMQ.NameServers[0]
		for _, key := range []string{"", testKey, adminKey} {
			_, _, body := call(t, http.MethodGet, base+"/readyz", key, "")
			var r struct {
				Checks map[string]struct{ Status, Error string }
			}
			_ = json.Unmarshal(body, &r)
			if r.Checks["rocketmq"].Status != "down" {
				t.Fatalf("readyz (key %q) = %s, want rocketmq down", key, body)
			}
			if shows := strings.Contains(string(body), nameServer); shows != (key == adminKey) {
				t.Fatalf("readyz (key %q) = %s: shows the NameServer address %v, want only for the admin", key, body, shows)
			}
		}
	})
	t.Run("finding 9: duplicate keys", func(t *testing.T) {
		dup := strings.Replace(orderBody, `"currency"`, `"customer_id":"c-2","currency"`, 1)
		code, hdr, body := post(dup)
		expect(t, "order with customer_id twice", code, hdr, body, http.StatusBadRequest, "malformed_body", `duplicate key "customer_id"`)
		nested := strings.Replace(orderBody, `"quantity":1`, `"quantity":1,"Quantity":1000`, 1)
		code, hdr, body = post(nested)
		expect(t, "item with quantity twice", code, hdr, body, http.StatusBadRequest, "malformed_body", `duplicate key "items[0].Quantity"`)
		// Signed by the provider, order_id twice: the MAC covers the bytes,
		// not one reading of them.
		pay := `{"provider_txn_id":"tx-dup","order_id":"0190b7a4-1c2d-7e3f-8a4b-5c6d7e8f9a0b","amount":100,"currency":"EUR","order_id":"` + paid.id + `"}`
		code, hdr, body = notify(pay)
		expect(t, "payment with order_id twice", code, hdr, body, http.StatusBadRequest, "malformed_body", `duplicate key "order_id"`)
	})
	t.Run("finding 10: identifier forms and repeated headers", func(t *testing.T) {
		for _, form := range []string{strings.ToUpper(paid.id), "urn:uuid:" + paid.id, "%7B" + paid.id + "%7D", strings.ReplaceAll(paid.id, "-", "")} {
			code, hdr, body := call(t, http.MethodGet, base+"/v1/orders/"+form, testKey, "")
			expect(t, "GET "+form, code, hdr, body, http.StatusBadRequest, "invalid_order_id", "lower-case")
		}
		code, hdr, body := post(orderBody, "Idempotency-Key", "first", "Idempotency-Key", "second")
		expect(t, "two Idempotency-Key headers", code, hdr, body, http.StatusBadRequest, "idempotency_key_invalid", "exactly one")
		pay := `{"provider_txn_id":"tx-two-sigs","order_id":"` + paid.id + `","amount":100,"currency":"EUR"}`
		good := payment.Sign(webhookSecret, time.Now(), []byte(pay))
		code, hdr, body = notify(pay, good, good)
		expect(t, "two X-Signature headers", code, hdr, body, http.StatusUnauthorized, "bad_signature", "")
		upper := strings.Replace(pay, paid.id, strings.ToUpper(paid.id), 1)
		code, hdr, body = notify(upper)
		expect(t, "payment for the upper-case id", code, hdr, body, http.StatusBadRequest, "malformed_body", "lower-case")
	})

	// Nothing of any refused request was written.
	if got := s.rows(t); got != 1 {
		t.Fatalf("orders = %d, want only the one placed", got)
	}
	var payments int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM payments`).Scan(&payments); err != nil || payments != 0 {
		t.Fatalf("payments = %d (%v), want none", payments, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), s.cfg.Redis.KeyPrefix+"idem:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("idempotency keys in Redis = %v (%v), want only the placed order's", keys, err)
	}
	if c := s.orderTx(); c.Pending+c.Committed+c.RolledBack != 1 {
		t.Fatalf("transactions %+v, want the one order's only", c)
	}
}
