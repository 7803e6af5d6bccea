package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// world is what several fake orderd replicas share (MySQL and Redis, in
// the real thing): the orders by idempotency key, and who placed and who
// paid each order.
type world struct {
	mu       sync.Mutex
	byKey    map[string]string
	placedAt map[string]int // order id → replica
	paidAt   map[string]int
}

// replica is one fake orderd. ready false makes /readyz answer 503;
// dropPlacements makes it store the order and cut the connection without
// an answer, as a replica killed -9 after its MySQL write.
type replica struct {
	idx            int
	w              *world
	ready          atomic.Bool
	dropPlacements atomic.Bool
	placements     atomic.Int64
}

// ServeHTTP answers /readyz and placements; payRecorder answers payments.
func (f *replica) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/readyz":
		if !f.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	case "/v1/orders":
		f.placements.Add(1)
		key := r.Header.Get("Idempotency-Key")
		f.w.mu.Lock()
		id, replay := f.w.byKey[key]
		if !replay {
			id = uuid.NewString()
			f.w.byKey[key] = id
			f.w.placedAt[id] = f.idx
		}
		f.w.mu.Unlock()
		if f.dropPlacements.Load() {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		code := http.StatusCreated
		if replay {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"id":"` + id + `","status":"PENDING_PAYMENT"}`))
	}
}

// payRecorder wraps a replica to learn which order each payment names.
func payRecorder(f *replica) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/payments/notify" {
			var n struct {
				OrderID string `json:"order_id"`
			}
			_ = json.NewDecoder(r.Body).Decode(&n)
			f.w.mu.Lock()
			f.w.paidAt[n.OrderID] = f.idx
			f.w.mu.Unlock()
			w.WriteHeader(http.StatusOK)
			return
		}
		f.ServeHTTP(w, r)
	})
}

func newReplicas(t *testing.T, n int) ([]*replica, []string, *world) {
	t.Helper()
	w := &world{byKey: map[string]string{}, placedAt: map[string]int{}, paidAt: map[string]int{}}
	var reps []*replica
	var urls []string
	for i := range n {
		f := &replica{idx: i, w: w}
		f.ready.Store(true)
		srv := httptest.NewServer(payRecorder(f))
		t.Cleanup(srv.Close)
		reps = append(reps, f)
		urls = append(urls, srv.URL)
	}
	return reps, urls, w
}

// TestSpreadsOverReplicasAndPaysElsewhere: placements go round-robin over
// three replicas and every payment goes to a different replica than the
// one that placed the order; the summary counts each replica's answers.
func TestSpreadsOverReplicasAndPaysElsewhere(t *testing.T) {
	reps, urls, w := newReplicas(t, 3)
	res, err := Run(context.Background(), Config{URLs: urls, APIKey: testKey, WebhookSecret: testSecret,
		Concurrency: 3, Count: 90, PayFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range reps {
		if got := f.placements.Load(); got < 20 {
			t.Errorf("replica %d got %d of 90 placements, want about 30", i, got)
		}
		if got := res.Summary.Replicas[i].PlaceCodes["201"]; int64(got) != f.placements.Load() {
			t.Errorf("summary counts %d placements at replica %d, it answered %d", got, i, f.placements.Load())
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.paidAt) != 90 {
		t.Fatalf("%d orders paid, want 90", len(w.paidAt))
	}
	for id, at := range w.paidAt {
		if at == w.placedAt[id] {
			t.Errorf("order %s paid at replica %d, where it was placed", id, at)
		}
	}
}

// TestFollowsReadiness: a replica whose /readyz answers 503 (draining)
// gets no placements after the next poll, and gets them again once ready.
func TestFollowsReadiness(t *testing.T) {
	reps, urls, _ := newReplicas(t, 3)
	reps[1].ready.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lb := newBalancer(urls)
	go lb.poll(ctx, http.DefaultClient, 20*time.Millisecond)
	waitUntil(t, func() bool { return !lb.ready[1].Load() })
	for range 30 {
		if i := lb.pick(); i == 1 {
			t.Fatal("a placement went to the replica that is not ready")
		}
	}
	if o := lb.other(0); o != 2 {
		t.Errorf("payment for a placement on 0 goes to %d, want 2 (1 is not ready)", o)
	}
	reps[1].ready.Store(true)
	waitUntil(t, func() bool { return lb.ready[1].Load() })
	seen := map[int]bool{}
	for range 6 {
		seen[lb.pick()] = true
	}
	if !seen[1] {
		t.Error("the replica back to ready gets no placements")
	}
}

// TestRetriesNoAnswerElsewhere: a replica stores the order and cuts the
// connection (killed after its write); the retry with the same key goes to
// another replica, which replays the order (200), and the order counts as
// accepted once.
func TestRetriesNoAnswerElsewhere(t *testing.T) {
	reps, urls, _ := newReplicas(t, 2)
	reps[0].dropPlacements.Store(true)
	res, err := Run(context.Background(), Config{URLs: urls, APIKey: testKey, Concurrency: 1, Count: 10,
		RetryFor: 5 * time.Second, ReadyPoll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if len(res.Accepted) != 10 || s.PlaceCodes["error"] != 0 {
		t.Fatalf("accepted %d, codes %v; want all 10 accepted after retries", len(res.Accepted), s.PlaceCodes)
	}
	if s.Retried == 0 || s.PlaceCodes["200"] != s.Retried {
		t.Errorf("retried %d, 200 replays %d: want every cut-off placement replayed", s.Retried, s.PlaceCodes["200"])
	}
	if got := s.Replicas[0].PlaceCodes["error"]; got != s.Retried {
		t.Errorf("replica 0 left %d placements unanswered, summary retried %d", got, s.Retried)
	}
	seen := map[string]bool{}
	for _, id := range res.Accepted {
		if seen[id] {
			t.Fatalf("order %s accepted twice", id)
		}
		seen[id] = true
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
