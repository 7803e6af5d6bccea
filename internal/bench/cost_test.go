//go:build linux

package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestMeter charges a process's CPU and a scraped process's counters to
// the operations of a run.
func TestMeter(t *testing.T) {
	reg := prometheus.NewRegistry()
	my := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "txorder_mysql_requests_total"}, []string{"request"})
	rd := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "txorder_redis_requests_total"}, []string{"request"})
	mq := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "txorder_rocketmq_requests_total"}, []string{"request"})
	reg.MustRegister(my, rd, mq)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	my.WithLabelValues("begin").Add(3) // before the run: not charged
	ctx := context.Background()
	m := startMeter(ctx, map[string]int{"loadgen": os.Getpid(), "gone": 0}, srv.URL)
	// Ten operations: 5 MySQL requests, one Redis command and one pipeline
	// of three commands, two broker requests each; and some CPU.
	for i := 0; i < 10; i++ {
		my.WithLabelValues("exec").Add(3)
		my.WithLabelValues("begin").Inc()
		my.WithLabelValues("commit").Inc()
		rd.WithLabelValues("command").Inc()
		rd.WithLabelValues("pipeline").Inc()
		rd.WithLabelValues("pipelined").Add(3)
		mq.WithLabelValues("send_half").Inc()
		mq.WithLabelValues("end_transaction").Inc()
	}
	// Spin until this process has used 100 ms more CPU (bounded: 20 s).
	t0, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		if t1, _ := cpuSeconds(os.Getpid()); t1-t0 >= 0.1 {
			break
		}
	}
	c := m.done(ctx, 10)
	for dep, want := range map[string]float64{"mysql": 5, "redis": 2, "rocketmq": 2} {
		if got := c.RoundTrips[dep]; got != want {
			t.Errorf("%s round trips per op: got %v, want %v", dep, got, want)
		}
	}
	// At least 100 ms of CPU over 10 operations.
	if got := c.CPUms["loadgen"]; got < 10 {
		t.Errorf("cpu ms per op: got %v, want ≥ 10 (%v)", got, c.CPUms)
	}
	if _, ok := c.CPUms["gone"]; ok {
		t.Errorf("pid 0 was measured: %v", c.CPUms)
	}
	if c.CPUms["total"] != c.CPUms["loadgen"] {
		t.Errorf("total %v, want loadgen's %v", c.CPUms["total"], c.CPUms["loadgen"])
	}
}

func TestCostTable(t *testing.T) {
	r := &Report{Placement: []PlacementPoint{{Concurrency: 32,
		FullCost: Cost{CPUms: map[string]float64{"orderd": 0.3, "mariadbd": 0.4, "total": 0.7}, RoundTrips: map[string]float64{"mysql": 5, "redis": 1, "rocketmq": 2}, Allocs: 400},
		RawCost:  Cost{CPUms: map[string]float64{"mariadbd": 0.35, "loadgen": 0.05, "total": 0.4}}}}}
	md := r.Markdown()
	for _, want := range []string{"| 32 | orderd | **0.300** | 0.400 | 0.700 | 5.00 / 1.00 / 2.00 | 400 (0) |", "| 32 | raw |  | 0.350 | 0.400 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	met := map[string]bool{}
	for _, tg := range r.Targets() {
		met[tg.Name] = tg.Met
	}
	if m, ok := met["orderd CPU ≤ 0.25 ms per placement at concurrency 32"]; !ok || m {
		t.Errorf("orderd CPU target: present %v met %v; want present, not met", ok, m)
	}
}
