package console

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRatesSumSelectedSeries: a rate adds its counters' series that carry
// its labels, over the samples of the last minute, scaled to a minute.
func TestRatesSumSelectedSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fc_accepted_total"}, []string{"action"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fc_failed_total"}, []string{"action", "reason"})
	checks := prometheus.NewCounter(prometheus.CounterOpts{Name: "checks_total"})
	reg.MustRegister(accepted, failed, checks)
	commit := map[string]string{"action": "commit"}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := newRateSampler(reg, []Rate{
		{Name: "checks", Counters: []Counter{{Metric: "checks_total"}}},
		{Name: "fast", Counters: []Counter{{Metric: "fc_accepted_total", Labels: commit}}},
		{Name: "missed", Counters: []Counter{{Metric: "fc_failed_total", Labels: commit}, {Metric: "fc_accepted_total", Labels: map[string]string{"action": "none"}}}},
		{Name: "later", Note: "not measured"},
	}, clk.now)

	r.sample() // the vectors have no series yet: they count 0
	if v := r.perMinute(); v[0].Known || v[1].Known {
		t.Fatalf("rates known from one sample: %+v", v)
	}
	accepted.WithLabelValues("commit").Add(7)
	accepted.WithLabelValues("rollback").Add(100)
	failed.WithLabelValues("commit", "timeout").Add(2)
	failed.WithLabelValues("commit", "no_route").Add(1)
	failed.WithLabelValues("rollback", "timeout").Add(50)
	checks.Add(4)
	clk.advance(30 * time.Second)
	r.sample()
	got := r.perMinute()
	want := []float64{8, 14, 6}
	for i, w := range want {
		if !got[i].Known || got[i].PerMinute != w {
			t.Errorf("%s = %+v, want %g per minute", got[i].Name, got[i], w)
		}
	}
	if got[3].Known || got[3].Note != "not measured" {
		t.Errorf("a rate without counters = %+v", got[3])
	}

	// After a minute of samples the oldest ones drop out.
	for range 14 {
		clk.advance(5 * time.Second)
		r.sample()
	}
	if got := r.perMinute()[1]; !got.Known || got.PerMinute != 0 {
		t.Errorf("fast commits with none in the last minute = %+v", got)
	}
}
