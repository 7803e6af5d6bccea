package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Targets of issue 8.
const (
	TargetPlacementRatio = 0.8    // full/raw at concurrency ≥ 32
	TargetAddedP50       = 1.0    // ms at concurrency 1
	TargetChecksPerSec   = 10000  // check-backs answered per second
	TargetDegradedRatio  = 0.5    // degraded/normal throughput
	TargetRecovery       = 2.0    // check intervals at 10,000 cached orders
	TargetDrainRate      = 2000.0 // spilled orders per second
	// Issue 13: payment → shipment with the fast commit on, p99 ms at
	// every check interval; with it off every paid order ships within two
	// intervals.
	TargetFastP99 = 250.0
	// Issue 16: orderd's own CPU time per placement, ms.
	TargetOrderdCPU = 0.25
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Markdown renders the report as the tables of docs/performance.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %s, %d CPUs (%s), %s/%s, %s, MariaDB %s. Run %s, %.0f s. orderd: group commit %s, direct send %s, fast commit %s.\n\n",
		m.Hostname, m.CPUs, m.CPUModel, m.OS, m.Arch, m.Go, m.MariaDB, r.Started.Format("2006-01-02 15:04 UTC"), r.Seconds,
		onOff(r.GroupCommit), onOff(r.DirectSend), onOff(r.FastCommit))
	if len(r.Placement) > 0 {
		b.WriteString("### 1. Placement vs raw MySQL (same transaction, same MariaDB, fsync per commit)\n\n")
		b.WriteString("| concurrency | raw MySQL /s | raw p50 / p95 / p99 ms | orderd /s | orderd p50 / p95 / p99 ms | ratio | added p50 ms |\n")
		b.WriteString("|---:|---:|---|---:|---|---:|---:|\n")
		for _, p := range r.Placement {
			fmt.Fprintf(&b, "| %d | %.0f | %.2f / %.2f / %.2f | %.0f | %.2f / %.2f / %.2f | **%.2f** | %.2f |\n",
				p.Concurrency, p.Raw.Throughput, p.Raw.Latency.P50, p.Raw.Latency.P95, p.Raw.Latency.P99,
				p.Full.Throughput, p.Full.Latency.P50, p.Full.Latency.P95, p.Full.Latency.P99, p.Ratio, p.AddedP50)
		}
		b.WriteString("\n")
		writeCost(&b, r.Placement)
	}
	if len(r.CheckBack) > 0 {
		b.WriteString("### 2. Check-back capacity (one round over K pending orders, answered one at a time)\n\n")
		b.WriteString("| K pending | checks/s | round s | pending orders a 30 s interval sustains |\n|---:|---:|---:|---:|\n")
		for _, c := range r.CheckBack {
			fmt.Fprintf(&b, "| %d | **%.0f** | %.2f | %d |\n", c.Pending, c.ChecksPerSec, c.Seconds, c.MaxPendingAt)
		}
		b.WriteString("\n")
	}
	if d := r.Degraded; d != nil {
		fmt.Fprintf(&b, "### 3. Degraded modes (concurrency %d)\n\n", d.Concurrency)
		b.WriteString("| mode | orders/s | p50 / p99 ms | ratio to normal | 5xx | answers |\n|---|---:|---|---:|---:|---|\n")
		row := func(name string, run Series, ratio float64, fx int) {
			fmt.Fprintf(&b, "| %s | %.0f | %.2f / %.2f | **%.2f** | %d | %s |\n", name, run.Throughput, run.Latency.P50, run.Latency.P99, ratio, fx, codesString(run.Codes))
		}
		row("normal", d.Normal, 1, fiveXX(d.Normal))
		row("MySQL down (Redis cache)", d.MySQLDown, d.MySQLRatio, d.MySQL5xx)
		row("RocketMQ down (spill queue)", d.RocketDown, d.RocketRatio, d.Rocket5xx)
		b.WriteString("\n")
	}
	if rc := r.Recovery; rc != nil {
		b.WriteString("### 4. Recovery\n\n| after | orders | time | rate |\n|---|---:|---|---:|\n")
		fmt.Fprintf(&b, "| MySQL returns (cache → MySQL) | %d | %.2f s = **%.2f check intervals** of %.0f s (MySQL restart %.2f s before) | %.0f /s |\n",
			rc.Cached, rc.CacheSeconds, rc.CacheIntervals, rc.CheckInterval, rc.MySQLRestartSec, ratio(float64(rc.Cached), rc.CacheSeconds))
		fmt.Fprintf(&b, "| RocketMQ returns (spill drain) | %d | %.2f s | **%.0f /s** |\n\n", rc.Spilled, rc.DrainSeconds, rc.DrainRate)
	}
	if len(r.EndToEnd) > 0 {
		b.WriteString("### 5. End-to-end latency: payment notification → shipment row\n\n")
		b.WriteString("| check interval s | fast commit | paid | shipped | within 2 intervals | p50 ms | p95 ms | p99 ms | max ms | p50 / interval | fast commits | check-back commits |\n")
		b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, e := range r.EndToEnd {
			fmt.Fprintf(&b, "| %.0f | %s | %d | %d | %d | %.0f | %.0f | **%.0f** | %.0f | %.2f | %d | %d |\n", e.CheckInterval, onOff(e.FastCommit),
				e.Paid, e.Shipped, e.WithinTwoIntervals, e.Latency.P50, e.Latency.P95, e.Latency.P99, e.Latency.Max, e.P50Intervals,
				e.FastCommits, e.CheckCommits)
		}
		b.WriteString("\n")
	}
	if r.Replicas != nil {
		r.Replicas.markdown(&b)
	}
	b.WriteString("### Targets\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Name, t.Measured, verdict(t.Met))
	}
	if len(r.Errors) > 0 {
		b.WriteString("\nErrors:\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

// costProcesses are the columns of the cost table, in order.
var costProcesses = []string{"orderd", "mariadbd", "redis", "broker", "loadgen", "loadgen+broker", "total"}

// writeCost renders what each placement and each raw transaction cost:
// CPU by process, orderd's round trips by dependency and its allocations.
func writeCost(b *strings.Builder, pts []PlacementPoint) {
	var cols []string
	for _, name := range costProcesses {
		for _, p := range pts {
			if _, ok := p.FullCost.CPUms[name]; ok {
				cols = append(cols, name)
				break
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	b.WriteString("CPU ms per placement (/proc/<pid>/stat), orderd's requests per placement and its allocations; raw = per raw transaction (mariadbd + the bench's client):\n\n")
	b.WriteString("| concurrency | side |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c)
	}
	b.WriteString(" MySQL / Redis / RocketMQ round trips | orderd allocs (bytes) | load avg |\n|---:|---|")
	for range cols {
		b.WriteString("---:|")
	}
	b.WriteString("---|---:|---:|\n")
	cpu := func(c Cost, name string) string {
		if v, ok := c.CPUms[name]; ok {
			return fmt.Sprintf("%.3f", v)
		}
		return ""
	}
	for _, p := range pts {
		fmt.Fprintf(b, "| %d | orderd |", p.Concurrency)
		for _, c := range cols {
			v := cpu(p.FullCost, c)
			if c == "orderd" {
				v = "**" + v + "**"
			}
			fmt.Fprintf(b, " %s |", v)
		}
		rt := p.FullCost.RoundTrips
		fmt.Fprintf(b, " %.2f / %.2f / %.2f | %.0f (%.0f) | %.1f |\n", rt["mysql"], rt["redis"], rt["rocketmq"],
			p.FullCost.Allocs, p.FullCost.AllocBytes, p.FullCost.LoadAvg)
		fmt.Fprintf(b, "| %d | raw |", p.Concurrency)
		for _, c := range cols {
			name := c
			if c == "loadgen+broker" {
				name = "loadgen"
			}
			fmt.Fprintf(b, " %s |", cpu(p.RawCost, name))
		}
		fmt.Fprintf(b, " | | %.1f |\n", p.RawCost.LoadAvg)
	}
	b.WriteString("\n")
}

func codesString(m map[string]int) string {
	var parts []string
	for _, k := range []string{"200", "201", "202", "409", "429", "500", "502", "503", "504", "error"} {
		if m[k] > 0 {
			parts = append(parts, k+": "+strconv.Itoa(m[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// Target is one target of issue 8 with what the run measured.
type Target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// Targets evaluates the run against the targets.
func (r *Report) Targets() []Target {
	var out []Target
	for _, p := range r.Placement {
		if p.Concurrency >= 32 {
			out = append(out, Target{fmt.Sprintf("placement ratio ≥ %.1f at concurrency %d", TargetPlacementRatio, p.Concurrency),
				fmt.Sprintf("%.2f", p.Ratio), p.Ratio >= TargetPlacementRatio})
		}
		if p.Concurrency == 1 {
			out = append(out, Target{"added p50 < 1 ms at concurrency 1", fmt.Sprintf("%.2f ms", p.AddedP50), p.AddedP50 < TargetAddedP50})
		}
		if v, ok := p.FullCost.CPUms["orderd"]; ok && p.Concurrency >= 32 {
			out = append(out, Target{fmt.Sprintf("orderd CPU ≤ %.2f ms per placement at concurrency %d", TargetOrderdCPU, p.Concurrency),
				fmt.Sprintf("%.3f ms", v), v <= TargetOrderdCPU})
		}
	}
	for _, c := range r.CheckBack {
		out = append(out, Target{fmt.Sprintf("≥ %d checks/s at K=%d", TargetChecksPerSec, c.Pending),
			fmt.Sprintf("%.0f", c.ChecksPerSec), c.ChecksPerSec >= TargetChecksPerSec})
	}
	if d := r.Degraded; d != nil {
		out = append(out, Target{"MySQL down ≥ 0.5 of normal, zero 5xx", fmt.Sprintf("%.2f, %d 5xx", d.MySQLRatio, d.MySQL5xx),
			d.MySQLRatio >= TargetDegradedRatio && d.MySQL5xx == 0})
		out = append(out, Target{"RocketMQ down ≥ 0.5 of normal, zero 5xx", fmt.Sprintf("%.2f, %d 5xx", d.RocketRatio, d.Rocket5xx),
			d.RocketRatio >= TargetDegradedRatio && d.Rocket5xx == 0})
	}
	if rc := r.Recovery; rc != nil {
		out = append(out, Target{fmt.Sprintf("cached orders in MySQL within 2 check intervals (%d cached)", rc.Cached),
			fmt.Sprintf("%.2f intervals (%.1f s)", rc.CacheIntervals, rc.CacheSeconds), rc.CacheIntervals <= TargetRecovery})
		out = append(out, Target{"spill drain ≥ 2,000 orders/s", fmt.Sprintf("%.0f /s", rc.DrainRate), rc.DrainRate >= TargetDrainRate})
	}
	for _, e := range r.EndToEnd {
		if e.FastCommit {
			out = append(out, Target{fmt.Sprintf("payment → shipment p99 ≤ %.0f ms with the fast commit, interval %.0f s", TargetFastP99, e.CheckInterval),
				fmt.Sprintf("%.0f ms (%d/%d shipped)", e.Latency.P99, e.Shipped, e.Paid), e.Latency.P99 <= TargetFastP99 && e.Shipped == e.Paid && e.Paid > 0})
		} else {
			out = append(out, Target{fmt.Sprintf("without it every paid order ships within 2 intervals, interval %.0f s", e.CheckInterval),
				fmt.Sprintf("%d of %d (max %.1f s)", e.WithinTwoIntervals, e.Paid, e.Latency.Max/1000), e.WithinTwoIntervals == e.Paid && e.Paid > 0})
		}
	}
	return out
}

// Table is the plain-text summary printed at the end of a run.
func (r *Report) Table(w io.Writer) {
	fmt.Fprint(w, r.Markdown())
}

// Write stores bench.json, bench.md and bench.png in dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(struct {
		*Report
		Targets []Target `json:"targets"`
	}{r, r.Targets()}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	return r.Chart(filepath.Join(dir, "bench.png"))
}

// Chart draws placement throughput (raw MySQL vs orderd) by concurrency,
// with the ratio under each pair, as a PNG.
func (r *Report) Chart(path string) error {
	p := plot.New()
	p.Title.Text = "Placement: raw MySQL transaction vs POST /v1/orders"
	p.Y.Label.Text = "orders per second"
	var raw, full plotter.Values
	var names []string
	for _, pt := range r.Placement {
		raw = append(raw, pt.Raw.Throughput)
		full = append(full, pt.Full.Throughput)
		names = append(names, fmt.Sprintf("c=%d (%.2f)", pt.Concurrency, pt.Ratio))
	}
	if len(names) == 0 {
		raw, full, names = plotter.Values{0}, plotter.Values{0}, []string{"no placement run"}
	}
	w := vg.Points(18)
	b1, err := plotter.NewBarChart(raw, w)
	if err != nil {
		return err
	}
	b1.Color = color.RGBA{R: 90, G: 120, B: 200, A: 255}
	b1.Offset = -w / 2
	b2, err := plotter.NewBarChart(full, w)
	if err != nil {
		return err
	}
	b2.Color = color.RGBA{R: 230, G: 130, B: 50, A: 255}
	b2.Offset = w / 2
	p.Add(b1, b2)
	p.Legend.Add("raw MySQL", b1)
	p.Legend.Add("orderd (ratio)", b2)
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}
