package main

import (
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/loadgen"
)

// writeRun writes the files a chaos run leaves: a 20 s load that got 202s
// while MySQL was down from 6 s to 12 s, metrics, the outage and an audit.
func writeRun(t *testing.T, dir string) {
	t.Helper()
	start := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	s := loadgen.Summary{RunID: "r", Started: start, Elapsed: 20, Placed: 400, Accepted: 390,
		PlaceCodes: map[string]int{"201": 300, "202": 90, "503": 6, "error": 4}}
	for t := range 20 {
		sec := loadgen.Second{T: t, C201: 20}
		if t >= 6 && t < 12 {
			sec = loadgen.Second{T: t, C202: 15, C503: 1}
		}
		s.Timeline = append(s.Timeline, sec)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	u := float64(start.Unix())
	metrics := "unix_seconds,order_cache_size,spill_pending\n"
	for i := range 25 {
		cache := 0
		if i >= 6 && i < 14 {
			cache = 15 * (i - 5)
		}
		metrics += fmt.Sprintf("%.3f,%d,0\n", u+float64(i)+0.2, cache)
	}
	files := map[string]string{
		reportSummary: string(b),
		reportMetrics: metrics,
		reportEvents:  fmt.Sprintf("label,from_unix,to_unix\nmysql down,%.3f,%.3f\n", u+6, u+12.4),
		reportAudit: `{"paid": 300, "lost": 0, "duplicated": 0, "phantom": 0, "absent": 0, "ok": true,
			"payment_to_shipment_count": 300, "payment_to_shipment_p50_ms": 3.2, "payment_to_shipment_p99_ms": 41.7, "payment_to_shipment_max_ms": 12345}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir)
	code, out, errOut := runTool(t, nil, "report", "--dir", dir, "--title", "kill-mysql test")
	if code != 0 {
		t.Fatalf("report exit %d, want 0; stderr %q", code, errOut)
	}
	if !strings.Contains(out, reportPNG) || !strings.Contains(out, reportHTML) {
		t.Errorf("output %q does not name both files", out)
	}
	// 201s only from second 13 (the outage ended at 12.4); the cache
	// empty from the sample at 14.2.
	if want := `recovery after "mysql down": placements all 201 again 0.6 s after it ended; Redis held no order 1.8 s after it`; !strings.Contains(out, want) {
		t.Errorf("output %q lacks %q", out, want)
	}
	f, err := os.Open(filepath.Join(dir, reportPNG))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("timeline.png is not a PNG: %v", err)
	}
	page, err := os.ReadFile(filepath.Join(dir, reportHTML))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kill-mysql test", "mysql down", "202 accepted (Redis)", "order cache size",
		"audit PASS", "201×300 202×90 503×6 other×4", "payment → shipment p50 3 ms, p99 42 ms, max 12.3 s"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("timeline.html lacks %q", want)
		}
	}
}

func TestReportOnlySummary(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir)
	for _, name := range []string{reportMetrics, reportEvents, reportAudit} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errOut := runTool(t, nil, "report", "--dir", dir); code != 0 {
		t.Fatalf("report without the optional files: exit %d, want 0; stderr %q", code, errOut)
	}
}

func TestReportErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(dir string) error
		args   []string
		code   int
		stderr string
	}{
		{"no dir", nil, []string{"report"}, 2, "give --dir"},
		{"no summary", func(dir string) error { return os.Remove(filepath.Join(dir, reportSummary)) }, nil, 1, "read the load summary"},
		{"bad metrics", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, reportMetrics), []byte("h,h,h\n1,2,3\n1,x,3\n"), 0o644)
		}, nil, 1, "line 3: not a number"},
		{"bad outage", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, reportEvents), []byte("down,5\n"), 0o644)
		}, nil, 1, "want label,from_unix,to_unix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeRun(t, dir)
			if tt.edit != nil {
				if err := tt.edit(dir); err != nil {
					t.Fatal(err)
				}
			}
			args := tt.args
			if args == nil {
				args = []string{"report", "--dir", dir}
			}
			code, _, errOut := runTool(t, nil, args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("exit %d stderr %q, want exit %d and %q", code, errOut, tt.code, tt.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, reportPNG)); tt.code != 0 && err == nil {
				t.Error("a failed report left a PNG behind")
			}
		})
	}
}

func TestReplicaLine(t *testing.T) {
	s := loadgen.Summary{Replicas: []loadgen.ReplicaCounts{
		{URL: "http://127.0.0.1:8080", PlaceCodes: map[string]int{"201": 10, "error": 2}},
		{URL: "http://orderd-lb:8080", PlaceCodes: map[string]int{"201": 9, "202": 1, "503": 1}},
	}}
	want := "attempts per replica: 127.0.0.1:8080 201×10 202×0 503×0 none×2  |  orderd-lb:8080 201×9 202×1 503×1 none×0"
	if got := replicaLine(s); got != want {
		t.Errorf("replicaLine = %q\nwant          %q", got, want)
	}
	if got := replicaLine(loadgen.Summary{Replicas: s.Replicas[:1]}); got != "" {
		t.Errorf("one replica: %q, want no line", got)
	}
}
