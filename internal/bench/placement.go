package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/loadgen"
	"github.com/txorder/txorder/order"
)

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Series is one timed run: how many operations completed, how fast, how long
// each took, and how many failed.
type Series struct {
	Ops        int            `json:"ops"`
	Errors     int            `json:"errors"`
	Seconds    float64        `json:"seconds"`
	Throughput float64        `json:"per_second"`
	Latency    Latency        `json:"latency_ms"`
	Codes      map[string]int `json:"status_codes,omitempty"`
}

// PlacementPoint compares placement through orderd with the raw MySQL
// transaction at one concurrency.
type PlacementPoint struct {
	Concurrency int     `json:"concurrency"`
	Raw         Series  `json:"raw_mysql"`
	Full        Series  `json:"full_placement"`
	Ratio       float64 `json:"ratio"`        // Full.Throughput / Raw.Throughput
	AddedP50    float64 `json:"added_p50_ms"` // Full p50 − Raw p50
	// RawCost is per raw transaction (mariadbd and the bench's client),
	// FullCost per placement request (every process of the stack).
	RawCost  Cost `json:"raw_cost"`
	FullCost Cost `json:"full_cost"`
}

func summarize(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	sort.Float64s(ms)
	q := func(p float64) float64 {
		i := int(p*float64(len(ms))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(ms) {
			i = len(ms) - 1
		}
		return round3(ms[i])
	}
	return Latency{Count: len(ms), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: round3(ms[len(ms)-1])}
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// benchOrder builds an order as order.Service does for the load
// generator's body: one item, an idempotency key, status PENDING_PAYMENT.
func benchOrder(n int, run string, window time.Duration) *order.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	qty, price := 1+n%3, int64(100+n%900)
	items := []order.Item{{SKU: "SKU-" + strconv.Itoa(n%50), Name: "Load item", Quantity: qty, UnitPrice: price}}
	return &order.Order{
		ID: uuid.Must(uuid.NewV7()), CustomerID: "load-" + strconv.Itoa(n%100), Currency: "EUR",
		Items: items, Total: int64(qty) * price, Status: order.StatusPendingPayment,
		PaymentDeadline: now.Add(window), CreatedAt: now, UpdatedAt: now,
		ClientID: "bench", IdempotencyKey: "raw-" + run + "-" + strconv.Itoa(n),
		RequestHash: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	}
}

// runRaw runs the placement's MySQL transaction (order.Store.Create: order,
// items, idempotency key) from workers goroutines for d.
func runRaw(ctx context.Context, store *order.Store, workers int, d time.Duration) Series {
	run := uuid.NewString()[:8]
	var next atomic.Int64
	var mu sync.Mutex
	var lat []float64
	errs := 0
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]float64, 0, 1024)
			e := 0
			for time.Now().Before(stop) && ctx.Err() == nil {
				o := benchOrder(int(next.Add(1)), run, 10*time.Minute)
				t0 := time.Now()
				err := store.Create(ctx, o)
				if err != nil {
					e++
					continue
				}
				local = append(local, float64(time.Since(t0).Microseconds())/1000)
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += e
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	return Series{Ops: len(lat), Errors: errs, Seconds: round3(el), Throughput: round3(float64(len(lat)) / el), Latency: summarize(lat)}
}

// runHTTP places orders through orderd with the load generator.
func runHTTP(ctx context.Context, baseURL string, workers int, d time.Duration, count int) (Series, loadgen.Result, error) {
	res, err := loadgen.Run(ctx, loadgen.Config{
		BaseURL: baseURL, APIKey: apiKey, Concurrency: workers, Duration: d, Count: count, Timeout: 10 * time.Second,
	})
	if err != nil {
		return Series{}, res, err
	}
	s := res.Summary
	ok := s.PlaceCodes["201"] + s.PlaceCodes["202"] + s.PlaceCodes["200"]
	r := Series{Ops: ok, Errors: s.Placed - ok, Seconds: round3(s.Elapsed), Codes: s.PlaceCodes,
		Latency: Latency{Count: s.Place.Count, P50: round3(s.Place.P50), P95: round3(s.Place.P95), P99: round3(s.Place.P99), Max: round3(s.Place.Max)}}
	if s.Elapsed > 0 {
		r.Throughput = round3(float64(ok) / s.Elapsed)
	}
	return r, res, nil
}

// fiveXX counts the 5xx answers and answerless requests of a run.
func fiveXX(r Series) int {
	n := 0
	for code, c := range r.Codes {
		if code == "error" || (len(code) == 3 && code[0] == '5') {
			n += c
		}
	}
	return n
}

func measurePlacement(ctx context.Context, cfg Config, s *stack, logf func(string, ...any)) ([]PlacementPoint, error) {
	// The raw baseline is orderd's transaction, one per order: one round
	// trip (OneRoundTrip, as cmd/orderd), never grouped.
	store, err := order.NewStore(s.db, order.StoreConfig{Timeout: 5 * time.Second, OneRoundTrip: true})
	if err != nil {
		return nil, err
	}
	// Warm both paths up: connections, routes, JIT-free but cache-cold.
	runRaw(ctx, store, 8, time.Second)
	if _, _, err := runHTTP(ctx, s.baseURL, 8, time.Second, 0); err != nil {
		return nil, err
	}
	var out []PlacementPoint
	pids := s.pids()
	rawPids := map[string]int{"mariadbd": pids["mariadbd"], "loadgen": os.Getpid()}
	for _, c := range cfg.Concurrency {
		m := startMeter(ctx, rawPids, "")
		raw := runRaw(ctx, store, c, cfg.PlacementDuration)
		rawCost := m.done(ctx, raw.Ops+raw.Errors)
		m = startMeter(ctx, pids, s.baseURL+"/metrics")
		full, _, err := runHTTP(ctx, s.baseURL, c, cfg.PlacementDuration, 0)
		if err != nil {
			return out, err
		}
		fullCost := m.done(ctx, full.Ops+full.Errors)
		p := PlacementPoint{Concurrency: c, Raw: raw, Full: full, AddedP50: round3(full.Latency.P50 - raw.Latency.P50),
			RawCost: rawCost, FullCost: fullCost}
		if raw.Throughput > 0 {
			p.Ratio = round3(full.Throughput / raw.Throughput)
		}
		logf("placement c=%-3d raw %8.0f/s p50 %6.2fms | full %8.0f/s p50 %6.2fms p99 %7.2fms | ratio %.2f codes %v",
			c, raw.Throughput, raw.Latency.P50, full.Throughput, full.Latency.P50, full.Latency.P99, p.Ratio, full.Codes)
		logf("  cost per placement: cpu ms %v | round trips %v | orderd allocs %.0f (%.0f B) | load %.1f",
			fullCost.CPUms, fullCost.RoundTrips, fullCost.Allocs, fullCost.AllocBytes, fullCost.LoadAvg)
		out = append(out, p)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

var _ = fmt.Sprint
