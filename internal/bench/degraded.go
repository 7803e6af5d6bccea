package bench

import (
	"context"
	"fmt"
	"time"
)

// Degraded compares placement with a dependency down against normal, at
// the same concurrency.
type Degraded struct {
	Concurrency int     `json:"concurrency"`
	Normal      Series  `json:"normal"`
	MySQLDown   Series  `json:"mysql_down"`
	RocketDown  Series  `json:"rocketmq_down"`
	MySQLRatio  float64 `json:"mysql_down_ratio"`
	RocketRatio float64 `json:"rocketmq_down_ratio"`
	MySQL5xx    int     `json:"mysql_down_5xx"`
	Rocket5xx   int     `json:"rocketmq_down_5xx"`
}

// Recovery is what happens after the dependency returns.
type Recovery struct {
	CheckInterval float64 `json:"check_interval_seconds"`
	// Cached orders (accepted 202 while MySQL was down) and how long after
	// MySQL answered again the last of them was in MySQL.
	Cached          int     `json:"cached_orders"`
	CacheSeconds    float64 `json:"cache_recovery_seconds"`
	CacheIntervals  float64 `json:"cache_recovery_check_intervals"`
	MySQLRestartSec float64 `json:"mysql_restart_seconds"`
	// Spilled orders (accepted 202 while RocketMQ was down) and how fast
	// the drainer placed them once the broker returned.
	Spilled      int     `json:"spilled_orders"`
	DrainSeconds float64 `json:"drain_seconds"`
	DrainRate    float64 `json:"drain_per_second"`
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round3(a / b)
}

// measureDegraded runs normal placement, then places with MySQL killed
// (the cache path) and measures recovery when it returns, then with the
// broker stopped (the spill path) and measures the drain when it returns.
func measureDegraded(ctx context.Context, cfg Config, s *stack, degraded, recovery bool, logf func(string, ...any)) (*Degraded, *Recovery, error) {
	c := cfg.DegradedConcurrency
	d := &Degraded{Concurrency: c}
	rec := &Recovery{CheckInterval: cfg.CheckInterval.Seconds()}
	if _, _, err := runHTTP(ctx, s.baseURL, 8, time.Second, 0); err != nil { // warm up
		return nil, nil, err
	}
	var err error
	if d.Normal, _, err = runHTTP(ctx, s.baseURL, c, cfg.DegradedDuration, 0); err != nil {
		return nil, nil, err
	}
	logf("degraded normal      %8.0f/s p50 %6.2fms codes %v", d.Normal.Throughput, d.Normal.Latency.P50, d.Normal.Codes)

	// MySQL down: every placement goes to the Redis cache. The run places
	// CachedOrders orders (bounded by a minute) so that the recovery has
	// that many to move.
	if err := s.in.my.Kill(); err != nil {
		return nil, nil, fmt.Errorf("kill mariadbd: %w", err)
	}
	mysqlUp := false
	defer func() {
		if !mysqlUp {
			_ = s.in.my.Start()
		}
	}()
	// Let orderd notice (its breaker opens on the first failures).
	_, _, _ = runHTTP(ctx, s.baseURL, 4, 500*time.Millisecond, 0)
	count := 0
	if recovery {
		count = cfg.CachedOrders
	}
	dur := cfg.DegradedDuration
	if recovery {
		dur = time.Minute
	}
	if d.MySQLDown, _, err = runHTTP(ctx, s.baseURL, c, dur, count); err != nil {
		return nil, nil, err
	}
	d.MySQL5xx = fiveXX(d.MySQLDown)
	d.MySQLRatio = ratio(d.MySQLDown.Throughput, d.Normal.Throughput)
	logf("degraded mysql down  %8.0f/s p50 %6.2fms codes %v ratio %.2f", d.MySQLDown.Throughput, d.MySQLDown.Latency.P50, d.MySQLDown.Codes, d.MySQLRatio)
	cached, err := s.cache.Size(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("cache size: %w", err)
	}
	rec.Cached = int(cached)
	t0 := time.Now()
	if err := s.in.my.Start(); err != nil {
		return nil, nil, fmt.Errorf("restart mariadbd: %w", err)
	}
	mysqlUp = true
	rec.MySQLRestartSec = round3(time.Since(t0).Seconds())
	t1 := time.Now()
	limit := t1.Add(5 * time.Minute)
	for ctx.Err() == nil && time.Now().Before(limit) {
		n, err := s.cache.Size(ctx)
		if err == nil && n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec.CacheSeconds = round3(time.Since(t1).Seconds())
	rec.CacheIntervals = round3(rec.CacheSeconds / cfg.CheckInterval.Seconds())
	logf("recovery: %d cached orders in MySQL %.2fs after it answered (restart took %.2fs) = %.2f check intervals",
		rec.Cached, rec.CacheSeconds, rec.MySQLRestartSec, rec.CacheIntervals)
	// Let the breaker close and the pool refill before the next run.
	if err := waitHTTP(ctx, s.baseURL+"/readyz", 30*time.Second); err != nil {
		return nil, nil, err
	}
	_, _, _ = runHTTP(ctx, s.baseURL, 4, time.Second, 0)

	// RocketMQ down: every placement goes to the spill queue.
	s.mq.StopBroker()
	brokerUp := false
	defer func() {
		if !brokerUp {
			_ = s.mq.StartBroker()
		}
	}()
	_, _, _ = runHTTP(ctx, s.baseURL, 4, 500*time.Millisecond, 0)
	count = 0
	if recovery {
		count = cfg.SpilledOrders
	}
	if d.RocketDown, _, err = runHTTP(ctx, s.baseURL, c, dur, count); err != nil {
		return nil, nil, err
	}
	d.Rocket5xx = fiveXX(d.RocketDown)
	d.RocketRatio = ratio(d.RocketDown.Throughput, d.Normal.Throughput)
	logf("degraded broker down %8.0f/s p50 %6.2fms codes %v ratio %.2f", d.RocketDown.Throughput, d.RocketDown.Latency.P50, d.RocketDown.Codes, d.RocketRatio)
	pending, _, err := s.spill.Depth(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("spill depth: %w", err)
	}
	rec.Spilled = int(pending)
	if err := s.mq.StartBroker(); err != nil {
		return nil, nil, fmt.Errorf("restart broker: %w", err)
	}
	brokerUp = true
	t2 := time.Now()
	limit = t2.Add(5 * time.Minute)
	for ctx.Err() == nil && time.Now().Before(limit) {
		n, _, err := s.spill.Depth(ctx)
		if err == nil && n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rec.DrainSeconds = round3(time.Since(t2).Seconds())
	rec.DrainRate = ratio(float64(rec.Spilled), rec.DrainSeconds)
	logf("recovery: %d spilled orders drained in %.2fs = %.0f orders/s", rec.Spilled, rec.DrainSeconds, rec.DrainRate)
	if !degraded {
		d = nil
	}
	if !recovery {
		rec = nil
	}
	return d, rec, nil
}
