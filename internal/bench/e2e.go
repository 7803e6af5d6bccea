package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/txorder/txorder/internal/loadgen"
)

// E2EPoint is the latency from the payment notification (its 200 answer)
// to the fulfillment shipment row, at one check interval.
type E2EPoint struct {
	CheckInterval float64 `json:"check_interval_seconds"`
	Paid          int     `json:"paid"`
	Shipped       int     `json:"shipped"`
	Latency       Latency `json:"latency_ms"`
	// P50Intervals is the median in check intervals.
	P50Intervals float64 `json:"p50_check_intervals"`
}

// measureE2E places and pays E2EOrders orders spread over two check
// intervals, then waits for their shipment rows.
func measureE2E(ctx context.Context, cfg Config, s *stack, iv time.Duration, logf func(string, ...any)) (E2EPoint, error) {
	var mu sync.Mutex
	paidAt := map[string]time.Time{}
	spread := 2*iv + time.Second
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
	if err != nil {
		return E2EPoint{}, err
	}
	p := E2EPoint{CheckInterval: iv.Seconds(), Paid: len(paidAt)}
	shippedAt := map[string]time.Time{}
	limit := time.Now().Add(4*iv + 30*time.Second)
	for ctx.Err() == nil && time.Now().Before(limit) && len(shippedAt) < len(paidAt) {
		rows, err := s.db.QueryContext(ctx, `SELECT order_id, MIN(created_at) FROM shipments GROUP BY order_id`)
		if err == nil {
			for rows.Next() {
				var id string
				var at time.Time
				if rows.Scan(&id, &at) == nil {
					shippedAt[strings.ToLower(id)] = at
				}
			}
			rows.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ms []float64
	for id, paid := range paidAt {
		if at, ok := shippedAt[strings.ToLower(id)]; ok {
			ms = append(ms, float64(at.Sub(paid).Microseconds())/1000)
		}
	}
	p.Shipped = len(ms)
	p.Latency = summarize(ms)
	p.P50Intervals = round3(p.Latency.P50 / float64(iv.Milliseconds()))
	logf("e2e interval %-5s paid %d shipped %d: p50 %.0fms p95 %.0fms p99 %.0fms max %.0fms (p50 = %.2f intervals)",
		iv, p.Paid, p.Shipped, p.Latency.P50, p.Latency.P95, p.Latency.P99, p.Latency.Max, p.P50Intervals)
	if p.Shipped < p.Paid {
		return p, fmt.Errorf("%d of %d paid orders shipped within the bound", p.Shipped, p.Paid)
	}
	return p, nil
}
