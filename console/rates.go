package console

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// rateSampler reads counters from the registry at a fixed interval and
// keeps a little more than a minute of samples, so that a per-minute rate
// is the counter's growth over the last minute of this replica.
type rateSampler struct {
	g     prometheus.Gatherer
	rates []Rate
	now   func() time.Time

	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	at     time.Time
	values []float64 // by rate: the sum of its counters
}

func newRateSampler(g prometheus.Gatherer, rates []Rate, now func() time.Time) *rateSampler {
	return &rateSampler{g: g, rates: rates, now: now}
}

func (r *rateSampler) run(ctx context.Context, every time.Duration) {
	if r.g == nil {
		return
	}
	r.sample()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sample()
		}
	}
}

func (r *rateSampler) sample() {
	families, err := r.g.Gather()
	if err != nil && len(families) == 0 {
		return
	}
	byName := make(map[string]*dto.MetricFamily, len(families))
	for _, f := range families {
		byName[f.GetName()] = f
	}
	values := make([]float64, len(r.rates))
	for i, rt := range r.rates {
		for _, c := range rt.Counters {
			values[i] += c.sum(byName[c.Metric])
		}
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, rateSample{at: now, values: values})
	// Keep the newest sample older than a minute as the base.
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) >= time.Minute {
		r.samples = r.samples[1:]
	}
}

// rateView is one rate as the overview shows it.
type rateView struct {
	Name      string  `json:"name"`
	PerMinute float64 `json:"per_minute"`
	// Known is false until two samples exist, or for a rate without counters.
	Known bool   `json:"known"`
	Note  string `json:"note,omitempty"`
}

// perMinute returns each rate over the span of the samples kept (up to a
// minute), scaled to one minute.
func (r *rateSampler) perMinute() []rateView {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]rateView, 0, len(r.rates))
	for i, rt := range r.rates {
		v := rateView{Name: rt.Name, Note: rt.Note}
		if len(rt.Counters) > 0 && len(r.samples) >= 2 {
			first, last := r.samples[0], r.samples[len(r.samples)-1]
			if span := last.at.Sub(first.at); span > 0 {
				delta := last.values[i] - first.values[i]
				if delta >= 0 { // a reset (restart) shows nothing rather than a negative rate
					v.PerMinute, v.Known = delta*float64(time.Minute)/float64(span), true
				}
			}
		}
		out = append(out, v)
	}
	return out
}

// sum adds the values of f's series that carry c.Labels. A family not
// registered yet (or a vector without series) counts 0.
func (c Counter) sum(f *dto.MetricFamily) float64 {
	var sum float64
series:
	for _, m := range f.GetMetric() {
		for name, want := range c.Labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == name {
					found = l.GetValue() == want
					break
				}
			}
			if !found {
				continue series
			}
		}
		sum += m.GetCounter().GetValue()
	}
	return sum
}
