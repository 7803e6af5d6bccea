package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Cost is what a run cost per operation: CPU time of every process in it,
// requests orderd made to each dependency, and orderd's allocations. It
// turns "how fast" into "how much", the quantity that decides throughput
// when every process shares the same cores.
type Cost struct {
	// CPUms is CPU time (user + system, from /proc/<pid>/stat) per
	// operation, in milliseconds, by process: orderd, mariadbd, redis,
	// broker, loadgen (the bench process: the load generator, or the raw
	// baseline's client), and total.
	CPUms map[string]float64 `json:"cpu_ms_per_op,omitempty"`
	// RoundTrips is orderd's requests per operation by dependency (mysql,
	// redis, rocketmq), from its txorder_*_requests_total counters; the
	// HTTP request itself is not counted.
	RoundTrips map[string]float64 `json:"round_trips_per_op,omitempty"`
	// Allocs and AllocBytes are orderd's heap allocations per operation
	// (go_memstats_mallocs_total, go_memstats_alloc_bytes_total).
	Allocs     float64 `json:"allocs_per_op,omitempty"`
	AllocBytes float64 `json:"alloc_bytes_per_op,omitempty"`
	// LoadAvg is the 1-minute load average at the end of the run: the
	// machine's other work, which the ratios only partly cancel.
	LoadAvg float64 `json:"loadavg_1m,omitempty"`
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// meter takes a snapshot of the processes' CPU time and orderd's counters
// before a run; done computes the Cost per operation after it.
type meter struct {
	pids       map[string]int
	cpu        map[string]float64 // seconds
	metricsURL string             // orderd's /metrics, or "" (raw baseline)
	counters   map[string]float64
}

// startMeter snapshots pids (name → pid; a pid of 0 is skipped) and, if
// metricsURL is set, orderd's counters.
func startMeter(ctx context.Context, pids map[string]int, metricsURL string) *meter {
	m := &meter{pids: map[string]int{}, cpu: map[string]float64{}, metricsURL: metricsURL}
	for name, pid := range pids {
		if pid == 0 {
			continue
		}
		if t, err := cpuSeconds(pid); err == nil {
			m.pids[name], m.cpu[name] = pid, t
		}
	}
	if metricsURL != "" {
		m.counters, _ = scrapeCounters(ctx, metricsURL)
	}
	return m
}

func (m *meter) done(ctx context.Context, ops int) Cost {
	c := Cost{LoadAvg: loadAvg()}
	if ops <= 0 {
		return c
	}
	per := func(d float64) float64 { return round3(d / float64(ops)) }
	if len(m.pids) > 0 {
		c.CPUms = map[string]float64{}
		var total float64
		for name, pid := range m.pids {
			t, err := cpuSeconds(pid)
			if err != nil {
				continue // the process died: its share is unknown, not zero
			}
			d := t - m.cpu[name]
			total += d
			c.CPUms[name] = per(d * 1000)
		}
		c.CPUms["total"] = per(total * 1000)
	}
	if m.metricsURL == "" || m.counters == nil {
		return c
	}
	after, err := scrapeCounters(ctx, m.metricsURL)
	if err != nil {
		return c
	}
	d := func(name string) float64 { return after[name] - m.counters[name] }
	c.RoundTrips = map[string]float64{
		"mysql": per(d("txorder_mysql_requests_total")),
		// A pipeline is one round trip however many commands it carries:
		// the "pipelined" series is kept out of the sum.
		"redis":    per(d("txorder_redis_requests_total")),
		"rocketmq": per(d("txorder_rocketmq_requests_total")),
	}
	c.Allocs = per(d("go_memstats_mallocs_total"))
	c.AllocBytes = per(d("go_memstats_alloc_bytes_total"))
	return c
}

// scrapeCounters reads url (Prometheus text format) and returns every
// counter summed over its series by name, plus the Redis counter's
// "pipelined" series alone.
func scrapeCounters(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", url, res.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := value(mf.GetType(), m)
			if name == "txorder_redis_requests_total" && label(m, "request") == "pipelined" {
				out[name+"{pipelined}"] += v
				continue
			}
			out[name] += v
		}
	}
	return out, nil
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
