package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	ms := make([]float64, 100)
	for i := range ms {
		ms[i] = float64(100 - i) // unsorted on purpose
	}
	got := summarize(ms)
	want := Latency{Count: 100, P50: 50, P95: 95, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (Latency{}) {
		t.Fatalf("summarize(nil) = %+v, want zero", got)
	}
}

func TestTargetsAndReport(t *testing.T) {
	r := &Report{
		Placement: []PlacementPoint{
			{Concurrency: 1, AddedP50: 0.7},
			{Concurrency: 32, Ratio: 0.85, Raw: Series{Throughput: 1000}, Full: Series{Throughput: 850}},
			{Concurrency: 128, Ratio: 0.5},
		},
		CheckBack: []CheckPoint{{Pending: 100000, ChecksPerSec: 12000}},
		Degraded: &Degraded{MySQLRatio: 0.6, RocketRatio: 0.7, Rocket5xx: 2,
			RocketDown: Series{Codes: map[string]int{"202": 10, "503": 2}}},
		Recovery: &Recovery{Cached: 10000, CacheIntervals: 1.5, DrainRate: 1500},
		EndToEnd: []E2EPoint{
			{CheckInterval: 5, FastCommit: true, Paid: 10, Shipped: 10, Latency: Latency{P99: 120}},
			{CheckInterval: 60, FastCommit: true, Paid: 10, Shipped: 10, Latency: Latency{P99: 400}},
			{CheckInterval: 5, FastCommit: false, Paid: 10, Shipped: 10, WithinTwoIntervals: 10, Latency: Latency{Max: 9000}},
			{CheckInterval: 60, FastCommit: false, Paid: 10, Shipped: 10, WithinTwoIntervals: 9, Latency: Latency{Max: 130000}},
		},
	}
	met := map[string]bool{}
	for _, tg := range r.Targets() {
		met[tg.Name] = tg.Met
	}
	for name, want := range map[string]bool{
		"added p50 < 1 ms at concurrency 1":                                   true,
		"placement ratio ≥ 0.8 at concurrency 32":                             true,
		"placement ratio ≥ 0.8 at concurrency 128":                            false,
		"≥ 10000 checks/s at K=100000":                                        true,
		"MySQL down ≥ 0.5 of normal, zero 5xx":                                true,
		"RocketMQ down ≥ 0.5 of normal, zero 5xx":                             false, // two 503s
		"cached orders in MySQL within 2 check intervals (10000 cached)":      true,
		"spill drain ≥ 2,000 orders/s":                                        false,
		"payment → shipment p99 ≤ 250 ms with the fast commit, interval 5 s":  true,
		"payment → shipment p99 ≤ 250 ms with the fast commit, interval 60 s": false,
		"without it every paid order ships within 2 intervals, interval 5 s":  true,
		"without it every paid order ships within 2 intervals, interval 60 s": false,
	} {
		if got, ok := met[name]; !ok || got != want {
			t.Errorf("target %q: met = %v (present %v), want %v", name, got, ok, want)
		}
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 32 | 1000 |", "**0.85**", "503: 2", "NOT met", "| 60 | off | 10 | 10 | 9 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("bench.md lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"bench.json", "bench.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
