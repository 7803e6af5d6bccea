// Package loadgen drives orderd like a population of clients: it places
// orders through POST /v1/orders at a rate or a concurrency, for a count
// or a duration (never unbounded), pays a fraction of the placed ones
// through the signed payment webhook as the provider would, and measures
// latencies, status codes and a per-second timeline of outcomes.
//
// The generator is closed-loop: with a rate, a tick that finds every
// worker busy waits for one, so an overloaded orderd lowers the offered
// rate (and the timeline shows it) instead of piling up requests.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/txorder/txorder/payment"
)

// Config describes one run.
type Config struct {
	// BaseURL of orderd, e.g. http://127.0.0.1:8080.
	BaseURL string
	// URLs, when set, replaces BaseURL with several orderd replicas: each
	// placement goes to the next replica whose /readyz answered 200 at the
	// last poll (round-robin), and its payment deliberately to another
	// replica than the one that placed it.
	URLs []string
	// ReadyPoll is how often each of several URLs is asked /readyz, as a
	// load balancer's health check would. Default 250ms.
	ReadyPoll time.Duration
	// RetryFor is how long a placement that got no answer, 503, or 409
	// idempotency_key_in_progress is retried with the same Idempotency-Key
	// (on the next ready replica), as a client that honours the contract
	// does; a 200 replay then returns the order. 0: one attempt.
	RetryFor time.Duration
	// APIKey authenticates placements.
	APIKey string
	// WebhookSecret signs payments; required when PayFraction > 0.
	WebhookSecret string
	// Rate is placements started per second; 0: as fast as Concurrency
	// workers go.
	Rate float64
	// Concurrency is the number of workers (requests in flight at most).
	// Default 8.
	Concurrency int
	// Count stops the run after this many placements; Duration after this
	// long. At least one must be set.
	Count    int
	Duration time.Duration
	// PayFraction of the accepted orders (201 or 202) are paid at once
	// (0..1), spread evenly over the run.
	PayFraction float64
	// PayRetryFor is how long a payment answered 404 (an order accepted
	// into Redis, 202, is not in MySQL yet), 503 or not at all is retried,
	// as a provider's webhook retries; 0: one attempt. Backoff 100ms
	// doubling to 2s.
	PayRetryFor time.Duration
	// Timeout bounds each HTTP request. Default 10s.
	Timeout time.Duration
	// Client defaults to an http.Client with Timeout and enough idle
	// connections for Concurrency.
	Client *http.Client
	// RunID prefixes idempotency keys and provider transaction ids;
	// default random, so two runs never collide.
	RunID string
	// OnResult, when set, is called after each placement (and its
	// payment) from the worker that made it, e.g. to move a progress bar.
	OnResult func(Outcome)
}

// targets returns the base URLs requests go to.
func (c Config) targets() []string {
	if len(c.URLs) > 0 {
		return c.URLs
	}
	return []string{c.BaseURL}
}

// Outcome is one placement as the client saw it.
type Outcome struct {
	N       int
	Code    int // 0 when the request failed without an answer
	Err     error
	OrderID string
	Paid    bool
	// Attempts is how many times the placement was sent (RetryFor).
	Attempts int
}

// Result is what a run measured. Accepted lists the ids of orders
// answered 201 or 202 (the ones orderd promised to keep), or 200 to a
// retry (the replay of an order an earlier attempt placed), in completion
// order.
type Result struct {
	Accepted []string
	Summary  Summary
}

// Summary is the JSON-ready measurement of a run.
type Summary struct {
	RunID       string    `json:"run_id"`
	Started     time.Time `json:"started"`
	Elapsed     float64   `json:"elapsed_seconds"`
	Interrupted bool      `json:"interrupted"`
	// Placed counts completed placement requests (any answer).
	Placed     int     `json:"placed"`
	Accepted   int     `json:"accepted"`
	Throughput float64 `json:"placed_per_second"`
	Place      Latency `json:"place_latency_ms"`
	// PlaceCodes counts answers by status code; "error" counts requests
	// without an answer (connection refused, timeout).
	PlaceCodes map[string]int `json:"place_status_codes"`
	Paid       int            `json:"paid"`
	Pay        Latency        `json:"pay_latency_ms"`
	PayCodes   map[string]int `json:"pay_status_codes"`
	// Retried counts placements sent more than once (RetryFor); their
	// final answer is the one in PlaceCodes.
	Retried int `json:"retried"`
	// Throttled counts 429 answers (rate limited) that were waited out
	// and retried with the same key; they are not in PlaceCodes.
	Throttled int `json:"throttled"`
	// Replicas counts every attempt by the replica that answered it (or
	// did not): placements and payments, by status code.
	Replicas []ReplicaCounts `json:"replicas"`
	// Timeline has one entry per second of the run (by completion time).
	Timeline []Second `json:"timeline"`
}

// ReplicaCounts is what one orderd replica answered during the run.
type ReplicaCounts struct {
	URL        string         `json:"url"`
	PlaceCodes map[string]int `json:"place_status_codes"`
	PayCodes   map[string]int `json:"pay_status_codes"`
}

// Latency summarises request latencies in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Second counts the placements that completed in one second of the run,
// by outcome, and the payments applied in it.
type Second struct {
	T      int `json:"t"`
	C201   int `json:"201"`
	C202   int `json:"202"`
	C503   int `json:"503"`
	Other  int `json:"other"`
	Errors int `json:"error"`
	Paid   int `json:"paid"`
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL == "" && len(c.URLs) == 0 {
		errs = append(errs, errors.New("base URL is required"))
	}
	for _, u := range c.URLs {
		if u == "" {
			errs = append(errs, errors.New("empty URL in the list"))
		}
	}
	if c.Count <= 0 && c.Duration <= 0 {
		errs = append(errs, errors.New("unbounded run: set a count or a duration"))
	}
	if c.Count < 0 || c.Duration < 0 || c.Rate < 0 || c.Concurrency < 0 || c.RetryFor < 0 || c.ReadyPoll < 0 {
		errs = append(errs, errors.New("count, duration, rate and concurrency must not be negative"))
	}
	if c.PayFraction < 0 || c.PayFraction > 1 || math.IsNaN(c.PayFraction) {
		errs = append(errs, fmt.Errorf("pay fraction %v is not in [0, 1]", c.PayFraction))
	}
	if c.PayFraction > 0 && c.WebhookSecret == "" {
		errs = append(errs, errors.New("paying needs the webhook secret"))
	}
	return errors.Join(errs...)
}

// Run places orders until the count or the duration is reached or ctx is
// cancelled, then waits for the requests in flight (each bounded by
// Timeout) and returns what it measured. A cancelled run is not an error:
// the result says Interrupted and holds everything up to then.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency + 4, IdleConnTimeout: 30 * time.Second,
		}}
	}
	if cfg.ReadyPoll == 0 {
		cfg.ReadyPoll = 250 * time.Millisecond
	}
	if cfg.RunID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.RunID = hex.EncodeToString(b[:])
	}
	lb := newBalancer(cfg.targets())
	r := &recorder{start: time.Now(), placeCodes: map[string]int{}, payCodes: map[string]int{}, timeline: map[int]*Second{},
		replicas: make([]ReplicaCounts, len(lb.targets))}
	for i, t := range lb.targets {
		r.replicas[i] = ReplicaCounts{URL: t, PlaceCodes: map[string]int{}, PayCodes: map[string]int{}}
	}
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	polled := make(chan struct{})
	go func() { defer close(polled); lb.poll(pollCtx, cfg.Client, cfg.ReadyPoll) }()
	defer func() { stopPoll(); <-polled }()

	jobs := make(chan int)
	go dispatch(ctx, cfg, jobs)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				out := work(ctx, cfg, lb, r, n)
				if cfg.OnResult != nil {
					cfg.OnResult(out)
				}
			}
		}()
	}
	wg.Wait()
	return r.result(cfg.RunID, ctx.Err() != nil), nil
}

// dispatch hands out placement numbers at the configured pace until a
// bound is reached or ctx is done, then closes jobs.
func dispatch(ctx context.Context, cfg Config, jobs chan<- int) {
	defer close(jobs)
	var tick <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer t.Stop()
		tick = t.C
	}
	var end <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	for n := 0; cfg.Count == 0 || n < cfg.Count; n++ {
		if tick != nil {
			select {
			case <-ctx.Done():
				return
			case <-end:
				return
			case <-tick:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-end:
			return
		case jobs <- n:
		}
	}
}

// shouldPay spreads the paid fraction evenly: order n is paid when the
// running total of f crosses an integer at n.
func shouldPay(n int, f float64) bool {
	return math.Floor(float64(n+1)*f) > math.Floor(float64(n)*f)
}

// work places order n and pays it when it is its turn.
func work(ctx context.Context, cfg Config, lb *balancer, r *recorder, n int) Outcome {
	// Requests in flight finish after an interrupt (bounded by Timeout),
	// so that an accepted order is known as accepted.
	rctx := context.WithoutCancel(ctx)
	qty, price := 1+n%3, int64(100+n%900)
	body := fmt.Sprintf(`{"customer_id":"load-%d","currency":"EUR","items":[{"sku":"SKU-%d","name":"Load item","quantity":%d,"unit_price":%d}]}`,
		n%100, n%50, qty, price)
	headers := map[string]string{
		"Authorization":   "Bearer " + cfg.APIKey,
		"Content-Type":    "application/json",
		"Idempotency-Key": "load-" + cfg.RunID + "-" + strconv.Itoa(n),
	}
	first := time.Now()
	giveUp := first.Add(cfg.RetryFor)
	backoff := 200 * time.Millisecond
	var (
		code      int
		answer    []byte
		err       error
		wait      time.Duration
		target    int
		throttled int
		out       = Outcome{N: n}
	)
	for {
		target = lb.pick()
		code, answer, wait, err = do(rctx, cfg, lb.targets[target], http.MethodPost, "/v1/orders", []byte(body), headers)
		r.attempt(target, true, code, err)
		// Rate limited (429): a well-behaved client waits as told and
		// sends the same request again; the 429 is counted, not the
		// placement's answer.
		if code == http.StatusTooManyRequests && throttled < maxThrottled && ctx.Err() == nil {
			throttled++
			r.throttle()
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		out.Attempts++
		if !retryPlacement(code, answer, err) || time.Now().Add(backoff).After(giveUp) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	out.Code, out.Err = code, err
	// 201 and 202 accept a new order; 200 answers a retry whose earlier
	// attempt placed it (the same key): either way orderd holds it.
	if code == http.StatusCreated || code == http.StatusAccepted || code == http.StatusOK {
		var o struct{ ID string }
		if json.Unmarshal(answer, &o) == nil {
			out.OrderID = o.ID
		}
	}
	r.place(first, time.Since(first), code, err, out.OrderID, out.Attempts)
	if out.OrderID == "" || cfg.PayFraction == 0 || !shouldPay(n, cfg.PayFraction) || ctx.Err() != nil {
		return out
	}
	pay, _ := json.Marshal(map[string]any{"provider_txn_id": "load-" + cfg.RunID + "-" + strconv.Itoa(n),
		"order_id": out.OrderID, "amount": int64(qty) * price, "currency": "EUR"})
	giveUp = time.Now().Add(cfg.PayRetryFor)
	backoff = 100 * time.Millisecond
	// The payment goes to another replica than the one that placed the
	// order, as a provider's webhook behind a load balancer would.
	payTo := lb.other(target)
	for {
		start := time.Now()
		code, _, _, err = do(rctx, cfg, lb.targets[payTo], http.MethodPost, "/v1/payments/notify", pay, map[string]string{
			"Content-Type":          "application/json",
			payment.HeaderSignature: payment.Sign(cfg.WebhookSecret, time.Now(), pay),
		})
		r.attempt(payTo, false, code, err)
		out.Paid = err == nil && code == http.StatusOK
		r.pay(time.Since(start), code, err, out.Paid)
		// An order accepted into Redis (202) is not in MySQL yet (404);
		// orderd may be busy (503) or unreachable: the provider tries again.
		retry := err != nil || code == http.StatusNotFound || code == http.StatusServiceUnavailable
		if out.Paid || !retry || time.Now().Add(backoff).After(giveUp) {
			return out
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		if err != nil || code == http.StatusServiceUnavailable {
			payTo = lb.other(payTo)
		}
	}
}

// retryPlacement reports whether a client should send the placement again
// with the same key: no answer (the outcome is unknown), 503, or 409
// idempotency_key_in_progress (another attempt with this key is still
// being placed, or was cut off by a crash and is taken over after 30 s).
func retryPlacement(code int, answer []byte, err error) bool {
	switch {
	case err != nil && code == 0, code == http.StatusServiceUnavailable:
		return true
	case code == http.StatusConflict:
		var p struct{ Code string }
		return json.Unmarshal(answer, &p) == nil && p.Code == "idempotency_key_in_progress"
	}
	return false
}

// maxThrottled bounds how many 429s one placement waits out.
const maxThrottled = 20

// do sends one request to base and returns the status, the body and the
// wait its Retry-After asks for (1s when absent or unreadable, at most 10s).
func do(ctx context.Context, cfg Config, base, method, path string, body []byte, headers map[string]string) (int, []byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, 0, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := cfg.Client.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer res.Body.Close()
	wait := time.Second
	if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && secs > 0 {
		wait = min(time.Duration(secs)*time.Second, 10*time.Second)
	}
	answer, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return res.StatusCode, nil, wait, err
	}
	return res.StatusCode, answer, wait, nil
}

// recorder collects measurements from the workers.
type recorder struct {
	start time.Time

	mu         sync.Mutex
	accepted   []string
	placeMs    []float64
	payMs      []float64
	placeCodes map[string]int
	payCodes   map[string]int
	timeline   map[int]*Second
	paid       int
	retried    int
	throttled  int
	replicas   []ReplicaCounts
}

func (r *recorder) second(at time.Time) *Second {
	t := int(at.Sub(r.start) / time.Second)
	s := r.timeline[t]
	if s == nil {
		s = &Second{T: t}
		r.timeline[t] = s
	}
	return s
}

func codeKey(code int, err error) string {
	if code == 0 && err != nil {
		return "error"
	}
	return strconv.Itoa(code)
}

// attempt counts one request by the replica it went to.
func (r *recorder) attempt(replica int, placement bool, code int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if placement {
		r.replicas[replica].PlaceCodes[codeKey(code, err)]++
	} else {
		r.replicas[replica].PayCodes[codeKey(code, err)]++
	}
}

func (r *recorder) place(start time.Time, d time.Duration, code int, err error, id string, attempts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if attempts > 1 {
		r.retried++
	}
	r.placeMs = append(r.placeMs, float64(d.Microseconds())/1000)
	r.placeCodes[codeKey(code, err)]++
	s := r.second(start.Add(d))
	switch {
	case code == 0:
		s.Errors++
	case code == http.StatusCreated:
		s.C201++
	case code == http.StatusAccepted:
		s.C202++
	case code == http.StatusServiceUnavailable:
		s.C503++
	default:
		s.Other++
	}
	if id != "" {
		r.accepted = append(r.accepted, id)
	}
}

func (r *recorder) throttle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.throttled++
}

func (r *recorder) pay(d time.Duration, code int, err error, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.payMs = append(r.payMs, float64(d.Microseconds())/1000)
	r.payCodes[codeKey(code, err)]++
	if ok {
		r.paid++
		r.second(time.Now()).Paid++
	}
}

func (r *recorder) result(runID string, interrupted bool) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	elapsed := time.Since(r.start)
	s := Summary{RunID: runID, Started: r.start.UTC(), Elapsed: elapsed.Seconds(), Interrupted: interrupted,
		Placed: len(r.placeMs), Accepted: len(r.accepted), Place: summarize(r.placeMs), PlaceCodes: r.placeCodes, Throttled: r.throttled,
		Paid: r.paid, Pay: summarize(r.payMs), PayCodes: r.payCodes, Retried: r.retried, Replicas: r.replicas,
		Timeline: []Second{}}
	if elapsed > 0 {
		s.Throughput = float64(s.Placed) / elapsed.Seconds()
	}
	last := -1
	for t := range r.timeline {
		last = max(last, t)
	}
	// Every second appears, quiet ones as zeros, so a chart has no gaps.
	for t := 0; t <= last; t++ {
		if sec := r.timeline[t]; sec != nil {
			s.Timeline = append(s.Timeline, *sec)
		} else {
			s.Timeline = append(s.Timeline, Second{T: t})
		}
	}
	return Result{Accepted: append([]string(nil), r.accepted...), Summary: s}
}

// summarize computes nearest-rank percentiles.
func summarize(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	round := func(v float64) float64 { return math.Round(v*100) / 100 }
	return Latency{Count: len(s), Mean: round(sum / float64(len(s))), P50: round(rank(50)), P95: round(rank(95)),
		P99: round(rank(99)), Max: round(s[len(s)-1])}
}
