// Package chart draws the timeline of a chaos run: placements per second
// by outcome (201 stored, 202 accepted into Redis, 503 refused, no answer)
// with the outage shaded, and the depth of orderd's Redis fallbacks (order
// cache, spill queue) in a second panel. Both draw with gonum.org/v1/plot
// (two panels sharing the time axis): PNG as an image, HTML as inline SVG
// in a page that loads nothing, so it opens offline.
package chart

import (
	"errors"
	"fmt"
	"math"
)

// Timeline is what a chart shows. All times are seconds since the load
// started.
type Timeline struct {
	// Title is the first line above the chart; Subtitle (optional) the
	// second, e.g. the audit's verdict.
	Title    string
	Subtitle string
	// Seconds are per-second placement outcomes; T is the second's start.
	Seconds []Second
	// Samples are the fallback depths scraped from orderd's /metrics.
	// A missing stretch (orderd down) is drawn as a gap.
	Samples []Sample
	// Outages are shaded, each with its label.
	Outages []Span
}

// Second counts the placements completed in [T, T+1).
type Second struct {
	T    int
	C201 int
	C202 int
	C503 int
	// Failed counts requests without an answer and other status codes.
	Failed int
}

// Sample is one scrape of orderd's metrics.
type Sample struct {
	T float64
	// CacheSize is txorder_order_cache_size: orders held in Redis while
	// MySQL was unusable.
	CacheSize float64
	// SpillPending is txorder_spill_depth{state="pending"}: orders held in
	// the spill queue while RocketMQ was unusable.
	SpillPending float64
}

// Span is an interval of the run, such as the target being down.
type Span struct {
	From, To float64
	Label    string
}

// Validate reports a timeline that cannot be drawn honestly.
func (tl Timeline) Validate() error {
	var errs []error
	if len(tl.Seconds) == 0 {
		errs = append(errs, errors.New("no seconds in the timeline: did the load place anything"))
	}
	for i, s := range tl.Seconds {
		if s.T < 0 || s.C201 < 0 || s.C202 < 0 || s.C503 < 0 || s.Failed < 0 {
			errs = append(errs, fmt.Errorf("second %d has a negative value", i))
		}
	}
	for i, s := range tl.Samples {
		if bad(s.T) || bad(s.CacheSize) || bad(s.SpillPending) {
			errs = append(errs, fmt.Errorf("sample %d is not a finite number", i))
		}
	}
	for i, o := range tl.Outages {
		if bad(o.From) || bad(o.To) || o.To < o.From {
			errs = append(errs, fmt.Errorf("outage %d: end %v before start %v", i, o.To, o.From))
		}
	}
	return errors.Join(errs...)
}

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// series is one outcome line of the top panel.
type series struct {
	name  string
	color uint32 // 0xRRGGBB
	value func(Second) int
}

var outcomes = []series{
	{"201 stored", 0x2ca02c, func(s Second) int { return s.C201 }},
	{"202 accepted (Redis)", 0xff7f0e, func(s Second) int { return s.C202 }},
	{"503 refused", 0xd62728, func(s Second) int { return s.C503 }},
	{"no answer / other", 0x7f7f7f, func(s Second) int { return s.Failed }},
}

const (
	cacheColor = 0x9467bd
	spillColor = 0x1f77b4
	cacheName  = "order cache size"
	spillName  = "spill queue pending"
)

// end is the x where the chart stops: after the last second of the load,
// the last outage, and the Redis fallbacks emptying (a few seconds after
// the last sample with orders held, if it was sampled), whichever is last.
// Samples taken later (while the run pays and audits) show nothing new.
func (tl Timeline) end() float64 {
	var x float64
	for _, s := range tl.Seconds {
		x = math.Max(x, float64(s.T+1))
	}
	for _, o := range tl.Outages {
		x = math.Max(x, o.To)
	}
	for i, s := range tl.Samples {
		if s.CacheSize > 0 || s.SpillPending > 0 {
			// Through the sample that shows them gone, plus a margin.
			last := s.T
			if i+1 < len(tl.Samples) {
				last = tl.Samples[i+1].T
			}
			x = math.Max(x, last+3)
		}
	}
	if n := len(tl.Samples); n > 0 {
		x = math.Min(x, math.Max(tl.Samples[n-1].T, float64(tl.Seconds[len(tl.Seconds)-1].T+1)))
	}
	return x + 1
}

// gapSeconds is the longest pause between samples still drawn as one line.
const gapSeconds = 2.5

// runs splits samples at gaps longer than gapSeconds.
func runs(samples []Sample) [][]Sample {
	var out [][]Sample
	start := 0
	for i := 1; i <= len(samples); i++ {
		if i == len(samples) || samples[i].T-samples[i-1].T > gapSeconds {
			out = append(out, samples[start:i])
			start = i
		}
	}
	return out
}
