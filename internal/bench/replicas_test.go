package bench

import (
	"os"
	"strings"
	"testing"
)

func TestCPUSecondsReadsProc(t *testing.T) {
	before, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spend some CPU: a few million hash rounds.
	x := uint64(1)
	for i := range 50_000_000 {
		x = x*6364136223846793005 + uint64(i)
	}
	after, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before || x == 0 {
		t.Errorf("CPU seconds went %v → %v after a busy loop", before, after)
	}
	if _, err := cpuSeconds(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestReplicasMarkdown(t *testing.T) {
	r := &ReplicaRun{Concurrency: 32, CheckInterval: 2, E2EOrders: 10,
		Points: []ReplicaPoint{{Replicas: 2, Throughput: 644, Latency: Latency{P50: 40.9, P99: 160.9},
			CPUPer1000: map[string]float64{"orderd-2": 0.458, "orderd-1": 0.44, "mariadbd": 0.573, "bench": 0.3}}},
		SameReplica: &Latency{P50: 3144}, CrossReplica: &Latency{P50: 3345}}
	var b strings.Builder
	r.markdown(&b)
	for _, want := range []string{"| 2 | **644** | 40.9 / 160.9 | 0 | orderd-1 0.440, orderd-2 0.458, mariadbd 0.573, bench 0.300 |",
		"one replica p50 3144", "different replicas p50 3345"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}
