package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot/vg"

	"github.com/txorder/txorder/internal/chart"
	"github.com/txorder/txorder/internal/loadgen"
)

// Report inputs and outputs, relative to --dir unless given as flags.
const (
	reportSummary = "load-summary.json"
	reportMetrics = "metrics.csv"
	reportEvents  = "outages.csv"
	reportAudit   = "audit.json"
	reportPNG     = "timeline.png"
	reportHTML    = "timeline.html"
)

func runReport(_ context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "report --dir DIR [flags]",
		"Draws the timeline of a chaos run (chaos/*.sh call it) as a PNG and an HTML page:\n"+
			"placements per second by outcome (201/202/503/no answer) from the load summary, the\n"+
			"outages shaded, and the order cache size and spill queue depth scraped from orderd's\n"+
			"/metrics on a second axis. Inputs in DIR: "+reportSummary+" (ordertool load), "+reportMetrics+"\n"+
			"(unix_seconds,order_cache_size,spill_pending; optional), "+reportEvents+" (label,from_unix,to_unix;\n"+
			"optional), "+reportAudit+" (ordertool audit --json; optional, its verdict goes in the title).")
	dir := fs.String("dir", "", "report folder (required)")
	title := fs.String("title", "", "chart title (default: the folder's name)")
	pngOut := fs.String("png", "", "PNG output (default DIR/"+reportPNG+")")
	htmlOut := fs.String("html", "", "HTML output (default DIR/"+reportHTML+")")
	width := fs.Float64("width", 13, "PNG width in inches (at 96 dpi)")
	height := fs.Float64("height", 8, "PNG height in inches")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(env.stderr, "ordertool report: give --dir and no arguments")
		return errUsage
	}
	if *width <= 0 || *height <= 0 || *width > 100 || *height > 100 {
		fmt.Fprintln(env.stderr, "ordertool report: --width and --height must be in (0, 100] inches")
		return errUsage
	}
	in := func(name string) string { return filepath.Join(*dir, name) }
	if *title == "" {
		*title = filepath.Base(filepath.Clean(*dir))
	}
	if *pngOut == "" {
		*pngOut = in(reportPNG)
	}
	if *htmlOut == "" {
		*htmlOut = in(reportHTML)
	}
	tl, err := loadTimeline(in(reportSummary), in(reportMetrics), in(reportEvents), in(reportAudit))
	if err != nil {
		return err
	}
	tl.Title = *title
	if err := writeWith(*pngOut, func(w io.Writer) error {
		return chart.PNG(w, tl, vg.Length(*width)*vg.Inch, vg.Length(*height)*vg.Inch)
	}); err != nil {
		return err
	}
	if err := writeWith(*htmlOut, func(w io.Writer) error { return chart.HTML(w, tl) }); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote %s and %s\n", *pngOut, *htmlOut)
	for _, line := range recovery(tl) {
		fmt.Fprintln(env.stdout, line)
	}
	return nil
}

// recovery says, for each outage, how long after it ended placements were
// all answered 201 again (the first second with 201s and nothing else) and
// Redis held no order any more (the first sample with an empty order cache
// and spill queue); "not within the run" when that never happened.
func recovery(tl chart.Timeline) []string {
	var out []string
	for _, o := range tl.Outages {
		normal, drained := "not within the run", "not within the run"
		for _, sec := range tl.Seconds {
			if float64(sec.T) >= o.To && sec.C201 > 0 && sec.C202+sec.C503+sec.Failed == 0 {
				normal = fmt.Sprintf("%.1f s", float64(sec.T)-o.To)
				break
			}
		}
		for _, smp := range tl.Samples {
			if smp.T >= o.To && smp.CacheSize == 0 && smp.SpillPending == 0 {
				drained = fmt.Sprintf("%.1f s", smp.T-o.To)
				break
			}
		}
		out = append(out, fmt.Sprintf("recovery after %q: placements all 201 again %s after it ended; Redis held no order %s after it",
			o.Label, normal, drained))
	}
	return out
}

// loadTimeline reads a run's files; the summary is required, the others
// are optional (absent: nothing drawn for them).
func loadTimeline(summaryPath, metricsPath, eventsPath, auditPath string) (chart.Timeline, error) {
	var tl chart.Timeline
	b, err := os.ReadFile(summaryPath)
	if err != nil {
		return tl, fmt.Errorf("read the load summary: %w", err)
	}
	var s loadgen.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return tl, fmt.Errorf("parse %s: %w", summaryPath, err)
	}
	if s.Started.IsZero() {
		return tl, fmt.Errorf("%s has no start time: is it an ordertool load summary", summaryPath)
	}
	for _, sec := range s.Timeline {
		tl.Seconds = append(tl.Seconds, chart.Second{T: sec.T, C201: sec.C201, C202: sec.C202, C503: sec.C503,
			Failed: sec.Other + sec.Errors})
	}
	since := func(unix float64) float64 {
		return unix - float64(s.Started.UnixNano())/float64(time.Second)
	}
	rows, err := readCSV(metricsPath, 3)
	if err != nil {
		return tl, err
	}
	for _, r := range rows {
		tl.Samples = append(tl.Samples, chart.Sample{T: since(r.nums[0]), CacheSize: r.nums[1], SpillPending: r.nums[2]})
	}
	rows, err = readCSV(eventsPath, 2)
	if err != nil {
		return tl, err
	}
	for _, r := range rows {
		tl.Outages = append(tl.Outages, chart.Span{Label: r.label, From: since(r.nums[0]), To: since(r.nums[1])})
	}
	// The timeline starts at the load's start; samples before it are
	// dropped, outages clipped.
	kept := tl.Samples[:0]
	for _, smp := range tl.Samples {
		if smp.T >= 0 {
			kept = append(kept, smp)
		}
	}
	tl.Samples = kept
	for i := range tl.Outages {
		tl.Outages[i].From = math.Max(tl.Outages[i].From, 0)
		tl.Outages[i].To = math.Max(tl.Outages[i].To, 0)
	}
	tl.Subtitle = loadLine(s)
	if verdict, err := auditLine(auditPath); err != nil {
		return tl, err
	} else if verdict != "" {
		tl.Subtitle += "   |   " + verdict
	}
	if r := replicaLine(s); r != "" {
		tl.Subtitle += "\n" + r
	}
	return tl, nil
}

func loadLine(s loadgen.Summary) string {
	c := s.PlaceCodes
	other := s.Placed - c["201"] - c["202"] - c["503"] - c["200"]
	replays := ""
	if c["200"] > 0 {
		replays = fmt.Sprintf(" 200×%d (retries replayed)", c["200"])
	}
	return fmt.Sprintf("placed %d in %.0fs: 201×%d 202×%d%s 503×%d other×%d; accepted %d, paid by the load %d",
		s.Placed, s.Elapsed, c["201"], c["202"], replays, c["503"], other, s.Accepted, s.Paid)
}

// replicaLine counts every placement attempt by the replica it went to
// ("host:port 201×n 202×n 503×n none×n", none = no answer); "" with one.
func replicaLine(s loadgen.Summary) string {
	if len(s.Replicas) < 2 {
		return ""
	}
	parts := make([]string, 0, len(s.Replicas))
	for _, r := range s.Replicas {
		name := r.URL
		if _, rest, ok := strings.Cut(name, "://"); ok {
			name = rest
		}
		p := r.PlaceCodes
		parts = append(parts, fmt.Sprintf("%s 201×%d 202×%d 503×%d none×%d", name, p["201"], p["202"], p["503"], p["error"]))
	}
	return "attempts per replica: " + strings.Join(parts, "  |  ")
}

// auditLine reads ordertool audit --json output; "" when there is none.
func auditLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the audit: %w", err)
	}
	var a struct {
		Paid       int     `json:"paid"`
		Lost       int     `json:"lost"`
		Duplicated int     `json:"duplicated"`
		Phantom    int     `json:"phantom"`
		Absent     int     `json:"absent"`
		OK         bool    `json:"ok"`
		Shipped    int     `json:"payment_to_shipment_count"`
		P50        float64 `json:"payment_to_shipment_p50_ms"`
		P99        float64 `json:"payment_to_shipment_p99_ms"`
		Max        float64 `json:"payment_to_shipment_max_ms"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return "audit: unreadable (" + filepath.Base(path) + ")", nil
	}
	verdict := "PASS"
	if !a.OK {
		verdict = "FAIL"
	}
	line := fmt.Sprintf("audit %s: paid %d, lost %d, duplicated %d, phantom %d, absent %d",
		verdict, a.Paid, a.Lost, a.Duplicated, a.Phantom, a.Absent)
	if a.Shipped > 0 {
		line += fmt.Sprintf("   |   payment → shipment p50 %s, p99 %s, max %s", ms(a.P50), ms(a.P99), ms(a.Max))
	}
	return line, nil
}

// ms prints a latency in ms below 10 s, in s above.
func ms(v float64) string {
	if v < 10000 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f s", v/1000)
}

type csvRow struct {
	label string
	nums  []float64
}

// readCSV reads rows of n numbers (metrics) or a label and n numbers
// (outages, n == 2); a missing file is no rows, a first line that is not
// numeric is a header.
func readCSV(path string, n int) ([]csvRow, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	labelled := n == 2
	var rows []csvRow
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var row csvRow
		fields := rec
		if labelled {
			if len(rec) != n+1 {
				return nil, fmt.Errorf("%s line %d: want label,from_unix,to_unix", path, line)
			}
			row.label, fields = rec[0], rec[1:]
		} else if len(rec) != n {
			return nil, fmt.Errorf("%s line %d: want %d fields, got %d", path, line, n, len(rec))
		}
		ok := true
		for _, fv := range fields {
			v, err := strconv.ParseFloat(strings.TrimSpace(fv), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				ok = false
				break
			}
			row.nums = append(row.nums, v)
		}
		if !ok {
			if line == 1 {
				continue // header
			}
			return nil, fmt.Errorf("%s line %d: not a number in %q", path, line, strings.Join(rec, ","))
		}
		rows = append(rows, row)
	}
}

// writeWith writes a file through a temporary one, so a failed render
// leaves no half file.
func writeWith(path string, render func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := render(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
