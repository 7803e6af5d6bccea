package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/payment"
)

const (
	testKey    = "loadgen-test-key-0123456789"
	testSecret = "loadgen-test-secret-0123456789abcdef"
)

// fakeOrderd answers placements 201, every 5th 503 and every 7th 202, and
// verifies payment signatures like orderd.
type fakeOrderd struct {
	n       atomic.Int64
	arrived atomic.Int64
	// notFoundFirst payment attempts are answered 404, as for an order
	// not in MySQL yet.
	notFoundFirst int64
	payAttempts   atomic.Int64
	mu            sync.Mutex
	keys          map[string]bool
	paid          map[string]bool
	block         chan struct{} // when set, placements wait for it
	verifier      *payment.Verifier
	// throttleFirst answers the first attempt of every key 429, as
	// orderd's rate limit would.
	throttleFirst bool
	throttled     map[string]bool
}

func newFakeOrderd(t *testing.T) (*fakeOrderd, *httptest.Server) {
	t.Helper()
	v, err := payment.NewVerifier(testSecret, 5*time.Minute, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOrderd{keys: map[string]bool{}, paid: map[string]bool{}, throttled: map[string]bool{}, verifier: v}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeOrderd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/v1/orders":
		f.arrived.Add(1)
		if f.block != nil {
			<-f.block
		}
		if r.Header.Get("Authorization") != "Bearer "+testKey || r.Header.Get("Idempotency-Key") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		if f.throttleFirst && !f.throttled[r.Header.Get("Idempotency-Key")] {
			f.throttled[r.Header.Get("Idempotency-Key")] = true
			f.mu.Unlock()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		dup := f.keys[r.Header.Get("Idempotency-Key")]
		f.keys[r.Header.Get("Idempotency-Key")] = true
		f.mu.Unlock()
		if dup {
			w.WriteHeader(http.StatusConflict)
			return
		}
		n := f.n.Add(1)
		switch {
		case n%5 == 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		case n%7 == 0:
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"id":"` + uuid.NewString() + `","status":"ACCEPTED"}`))
		default:
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"` + uuid.NewString() + `","status":"PENDING_PAYMENT"}`))
		}
	case "/v1/payments/notify":
		if f.notFoundFirst > 0 && f.payAttempts.Add(1) <= f.notFoundFirst {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if err := f.verifier.Verify(r.Header.Get(payment.HeaderSignature), body); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n, err := payment.DecodeNotification(body)
		if err != nil || n.Amount <= 0 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.paid[n.OrderID.String()] = true
		f.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestRunCountsEverything(t *testing.T) {
	f, srv := newFakeOrderd(t)
	var results atomic.Int64
	res, err := Run(context.Background(), Config{BaseURL: srv.URL + "/", APIKey: testKey, WebhookSecret: testSecret,
		Concurrency: 4, Count: 140, PayFraction: 0.5, OnResult: func(Outcome) { results.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	// The fake answers by arrival number: every 5th 503, every other 7th 202.
	var c201, c202, c503 int
	for n := 1; n <= 140; n++ {
		switch {
		case n%5 == 0:
			c503++
		case n%7 == 0:
			c202++
		default:
			c201++
		}
	}
	if s.Placed != 140 || s.PlaceCodes["201"] != c201 || s.PlaceCodes["202"] != c202 || s.PlaceCodes["503"] != c503 || results.Load() != 140 {
		t.Fatalf("codes = %v placed %d results %d, want 201×%d 202×%d 503×%d", s.PlaceCodes, s.Placed, results.Load(), c201, c202, c503)
	}
	if len(res.Accepted) != c201+c202 || s.Accepted != c201+c202 {
		t.Fatalf("accepted = %d, want %d (201 and 202)", len(res.Accepted), c201+c202)
	}
	// Every other placement is due for payment; those answered 503 are not
	// paid (nothing to pay).
	if s.Paid < (c201+c202)/2-c503 || s.Paid > 70 || s.PayCodes["200"] != s.Paid || len(f.paid) != s.Paid {
		t.Fatalf("paid %d (codes %v, server saw %d), want about half of the %d accepted orders, all signed right", s.Paid, s.PayCodes, len(f.paid), c201+c202)
	}
	var sum Second
	for i, sec := range s.Timeline {
		if sec.T != i {
			t.Fatalf("timeline has a gap at %d: %+v", i, s.Timeline)
		}
		sum.C201 += sec.C201
		sum.C202 += sec.C202
		sum.C503 += sec.C503
		sum.Paid += sec.Paid
	}
	if sum.C201 != c201 || sum.C202 != c202 || sum.C503 != c503 || sum.Paid != s.Paid {
		t.Fatalf("timeline sums %+v disagree with the counts", sum)
	}
	if s.Place.Count != 140 || s.Place.P50 <= 0 || s.Place.P50 > s.Place.P95 || s.Place.P95 > s.Place.P99 || s.Place.P99 > s.Place.Max {
		t.Fatalf("latency = %+v", s.Place)
	}
	if s.Interrupted || s.Throughput <= 0 {
		t.Fatalf("summary = %+v", s)
	}
}

func TestRunDurationAndRate(t *testing.T) {
	_, srv := newFakeOrderd(t)
	res, err := Run(context.Background(), Config{BaseURL: srv.URL, APIKey: testKey, Rate: 100, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// At 100/s for 0.3 s at most 30 placements start, and the first tick
	// comes after 10 ms.
	if p := res.Summary.Placed; p == 0 || p > 31 {
		t.Fatalf("placed %d in 300ms at 100/s", p)
	}
	if res.Summary.Paid != 0 || res.Summary.Pay.Count != 0 {
		t.Fatalf("paid without a pay fraction: %+v", res.Summary)
	}
}

// TestRunInterrupted: cancelling stops placing, lets the requests in flight
// finish, and returns what was measured.
func TestRunInterrupted(t *testing.T) {
	f, srv := newFakeOrderd(t)
	f.block = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() {
		res, _ := Run(ctx, Config{BaseURL: srv.URL, APIKey: testKey, Concurrency: 3, Count: 1000})
		done <- res
	}()
	// Three requests are in flight and blocked; interrupt, then let them
	// answer.
	deadline := time.Now().Add(5 * time.Second)
	for f.inFlight() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the requests never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	close(f.block)
	res := <-done
	if !res.Summary.Interrupted || res.Summary.Placed != 3 || len(res.Accepted) != 3 {
		t.Fatalf("interrupted run = %+v accepted %d, want the 3 in flight finished and recorded", res.Summary, len(res.Accepted))
	}
}

func (f *fakeOrderd) inFlight() int { return int(f.arrived.Load()) }

func TestValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{BaseURL: "http://x"}, "unbounded"},
		{Config{BaseURL: "http://x", Count: 1, PayFraction: 1.5, WebhookSecret: "s"}, "not in [0, 1]"},
		{Config{BaseURL: "http://x", Count: 1, PayFraction: 0.5}, "webhook secret"},
		{Config{Count: 1}, "base URL"},
		{Config{BaseURL: "http://x", Count: -1, Duration: time.Second}, "negative"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
		if _, err := Run(context.Background(), tc.cfg); err == nil {
			t.Errorf("Run(%+v) ran", tc.cfg)
		}
	}
}

func TestShouldPaySpreadsTheFraction(t *testing.T) {
	for _, f := range []float64{0, 0.1, 0.3, 0.5, 1} {
		n := 0
		for i := range 1000 {
			if shouldPay(i, f) {
				n++
			}
		}
		if want := int(f * 1000); n != want {
			t.Errorf("fraction %v paid %d of 1000, want %d", f, n, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	ms := make([]float64, 100)
	for i := range ms {
		ms[len(ms)-1-i] = float64(i + 1)
	}
	got := summarize(ms)
	if got != (Latency{Count: 100, Mean: 50.5, P50: 50, P95: 95, P99: 99, Max: 100}) {
		t.Fatalf("summarize = %+v", got)
	}
	if (summarize(nil) != Latency{}) {
		t.Fatal("empty summary is not zero")
	}
	b, _ := json.Marshal(Second{T: 1, C201: 2, C503: 1})
	if string(b) != `{"t":1,"201":2,"202":0,"503":1,"other":0,"error":0,"paid":0}` {
		t.Fatalf("timeline JSON = %s", b)
	}
}

// TestPaymentRetries: a payment answered 404 (the order is still on its
// way to MySQL) is retried until it is applied.
func TestPaymentRetries(t *testing.T) {
	f, srv := newFakeOrderd(t)
	f.notFoundFirst = 3
	res, err := Run(context.Background(), Config{BaseURL: srv.URL, APIKey: testKey, WebhookSecret: testSecret,
		Concurrency: 1, Count: 1, PayFraction: 1, PayRetryFor: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Summary; s.Paid != 1 || s.PayCodes["404"] != 3 || s.PayCodes["200"] != 1 || s.Pay.Count != 4 {
		t.Fatalf("summary = %+v, want 3 answers 404 then one 200", s)
	}
	// Without retries the payment is given up after the first answer.
	f2, srv2 := newFakeOrderd(t)
	f2.notFoundFirst = 1
	res, _ = Run(context.Background(), Config{BaseURL: srv2.URL, APIKey: testKey, WebhookSecret: testSecret,
		Concurrency: 1, Count: 1, PayFraction: 1})
	if s := res.Summary; s.Paid != 0 || s.PayCodes["404"] != 1 {
		t.Fatalf("summary without retries = %+v", s)
	}
}

// TestRunWaitsOutRateLimits: a 429 is waited out for its Retry-After and
// the same request (same key) sent again; the summary counts the 429s
// apart from the placements' answers.
func TestRunWaitsOutRateLimits(t *testing.T) {
	f, srv := newFakeOrderd(t)
	f.throttleFirst = true
	res, err := Run(context.Background(), Config{BaseURL: srv.URL, APIKey: testKey, Concurrency: 4, Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if s.Placed != 4 || s.Throttled != 4 || s.PlaceCodes["429"] != 0 || s.PlaceCodes["409"] != 0 || f.arrived.Load() != 8 {
		t.Fatalf("summary = %+v after %d requests, want 4 placements each retried once after its 429", s, f.arrived.Load())
	}
}
