package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/txorder/txorder/internal/loadgen"
)

// E2EPoint is the latency from the payment notification (its 200 answer)
// to the fulfillment shipment row, at one check interval, with the fast
// commit on or off.
type E2EPoint struct {
	CheckInterval float64 `json:"check_interval_seconds"`
	FastCommit    bool    `json:"fast_commit"`
	Paid          int     `json:"paid"`
	Shipped       int     `json:"shipped"`
	Latency       Latency `json:"latency_ms"`
	// P50Intervals is the median in check intervals.
	P50Intervals float64 `json:"p50_check_intervals"`
	// WithinTwoIntervals counts paid orders shipped within two check
	// intervals of their payment: all of them with the fast commit off,
	// where the check-back releases every event.
	WithinTwoIntervals int `json:"within_two_intervals"`
	// FastCommits are the fast commits orderd's broker accepted; CheckCommits
	// the check-back COMMIT answers (orderd's /metrics at the end).
	FastCommits  int `json:"fast_commits"`
	CheckCommits int `json:"check_commits"`
}

// e2eSpreadMax bounds how long a cell places and pays: the off cells then
// wait up to two intervals for their check-backs.
const e2eSpreadMax = 10 * time.Second

// measureE2E places and pays E2EOrders orders over a few seconds (at most
// two intervals), then waits for their shipment rows, at most two
// intervals and a margin after the last payment.
func measureE2E(ctx context.Context, cfg Config, s *stack, iv time.Duration, fast bool, logf func(string, ...any)) (E2EPoint, error) {
	var mu sync.Mutex
	paidAt := map[string]time.Time{}
	spread := min(2*iv+time.Second, e2eSpreadMax)
	_, err := loadgen.Run(ctx, loadgen.Config{
		BaseURL: s.baseURL, APIKey: apiKey, WebhookSecret: webhookSecret, PayFraction: 1,
		Rate: float64(cfg.E2EOrders) / spread.Seconds(), Concurrency: 8, Count: cfg.E2EOrders, Duration: spread + 30*time.Second,
		OnResult: func(o loadgen.Outcome) {
			if o.Paid {
				mu.Lock()
				paidAt[o.OrderID] = time.Now()
				mu.Unlock()
			}
		},
	})
	p := E2EPoint{CheckInterval: iv.Seconds(), FastCommit: fast, Paid: len(paidAt)}
	if err != nil {
		return p, err
	}
	shippedAt := s.waitShipped(ctx, paidAt, time.Now().Add(2*iv+20*time.Second))
	var ms []float64
	for id, paid := range paidAt {
		if at, ok := shippedAt[strings.ToLower(id)]; ok {
			d := at.Sub(paid)
			ms = append(ms, float64(d.Microseconds())/1000)
			if d <= 2*iv {
				p.WithinTwoIntervals++
			}
		}
	}
	p.Shipped = len(ms)
	p.Latency = summarize(ms)
	p.P50Intervals = round3(p.Latency.P50 / float64(iv.Milliseconds()))
	p.FastCommits = int(scrape(ctx, s.baseURL, `txorder_fastcommit_accepted_total{action="commit"}`))
	p.CheckCommits = int(scrape(ctx, s.baseURL, `txorder_tx_check_total{answer="commit",reason="paid"}`))
	logf("e2e interval %-5s fast commit %-3s paid %d shipped %d (within 2 intervals %d): p50 %.0fms p95 %.0fms p99 %.0fms max %.0fms; fast commits %d, check-back commits %d",
		iv, onOff(fast), p.Paid, p.Shipped, p.WithinTwoIntervals, p.Latency.P50, p.Latency.P95, p.Latency.P99, p.Latency.Max,
		p.FastCommits, p.CheckCommits)
	if p.Shipped < p.Paid {
		return p, fmt.Errorf("%d of %d paid orders shipped within the bound", p.Shipped, p.Paid)
	}
	return p, nil
}

// waitShipped polls the shipments table until every paid order has a
// shipment row or limit passes, and returns each shipped order's first
// shipment time by lower-case id (paid's keys may be in any case).
func (s *stack) waitShipped(ctx context.Context, paid map[string]time.Time, limit time.Time) map[string]time.Time {
	shipped := map[string]time.Time{}
	for ctx.Err() == nil && time.Now().Before(limit) {
		rows, err := s.db.QueryContext(ctx, `SELECT order_id, MIN(created_at) FROM shipments GROUP BY order_id`)
		if err == nil {
			for rows.Next() {
				var id string
				var at time.Time
				if rows.Scan(&id, &at) == nil {
					shipped[strings.ToLower(id)] = at
				}
			}
			rows.Close()
		}
		all := true
		for id := range paid {
			if _, ok := shipped[strings.ToLower(id)]; !ok {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return shipped
}

// scrape reads one sample from orderd's /metrics (0 when absent).
func scrape(ctx context.Context, baseURL, series string) float64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
