package chart

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/txorder/txorder/internal/browser"
	"gonum.org/v1/plot/vg"
	"os"
	"path/filepath"
	"time"
)

// sample is a run of 30 s with MySQL down from 8.2 s to 14.7 s: 202s and
// a growing order cache during the outage, orderd unscraped for 2 s.
func sample() Timeline {
	tl := Timeline{Title: "kill-mysql", Subtitle: "audit: lost 0, duplicated 0, phantom 0",
		Outages: []Span{{From: 8.2, To: 14.7, Label: "mysql down"}}}
	for t := range 30 {
		s := Second{T: t, C201: 40}
		if t >= 8 && t <= 14 {
			s = Second{T: t, C202: 35, C503: 2, Failed: 1}
		}
		tl.Seconds = append(tl.Seconds, s)
	}
	for t := 0.0; t < 30; t += 1 {
		if t > 20 && t < 23 {
			continue
		}
		var c float64
		if t >= 8 && t <= 16 {
			c = (t - 7) * 35
		}
		tl.Samples = append(tl.Samples, Sample{T: t + 0.3, CacheSize: c})
	}
	return tl
}

func TestPNG(t *testing.T) {
	var buf bytes.Buffer
	if err := PNG(&buf, sample(), 12*vg.Inch, 7*vg.Inch); err != nil {
		t.Fatalf("PNG: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("decode the written PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("image is %dx%d, want a real chart", b.Dx(), b.Dy())
	}
}

func TestPNGWithoutSamples(t *testing.T) {
	tl := sample()
	tl.Samples = nil
	var buf bytes.Buffer
	if err := PNG(&buf, tl, 6*vg.Inch, 4*vg.Inch); err != nil {
		t.Fatalf("PNG: %v", err)
	}
	if buf.Len() == 0 {
		t.Error("empty PNG")
	}
}

func TestHTML(t *testing.T) {
	var buf bytes.Buffer
	if err := HTML(&buf, sample()); err != nil {
		t.Fatalf("HTML: %v", err)
	}
	page := buf.String()
	for _, want := range []string{"<svg", "201 stored", "202 accepted (Redis)", "503 refused", "no answer / other",
		cacheName, spillName, "mysql down", "kill-mysql", `class="outage"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Offline: nothing is loaded from anywhere.
	for _, banned := range []string{"<script", "http://", "https://", "<link", "@import", "url("} {
		if strings.Contains(strings.ReplaceAll(page, "http://www.w3.org/", ""), banned) {
			t.Errorf("page contains %q: it must open offline", banned)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Timeline)
		want string
	}{
		{"empty", func(tl *Timeline) { tl.Seconds = nil }, "no seconds"},
		{"negative", func(tl *Timeline) { tl.Seconds[3].C503 = -1 }, "negative"},
		{"outage backwards", func(tl *Timeline) { tl.Outages[0].To = 1 }, "before start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := sample()
			tt.edit(&tl)
			err := tl.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if err := PNG(&bytes.Buffer{}, tl, vg.Inch, vg.Inch); err == nil {
				t.Error("PNG drew an invalid timeline")
			}
			if err := HTML(&bytes.Buffer{}, tl); err == nil {
				t.Error("HTML rendered an invalid timeline")
			}
		})
	}
}

func TestRuns(t *testing.T) {
	got := runs([]Sample{{T: 0}, {T: 1}, {T: 2}, {T: 6}, {T: 7}, {T: 20}})
	if len(got) != 3 || len(got[0]) != 3 || len(got[1]) != 2 || len(got[2]) != 1 {
		t.Errorf("runs split into %v, want 3 runs of 3, 2 and 1", got)
	}
	if runs(nil) != nil {
		t.Error("runs(nil) is not empty")
	}
}

// TestHTMLOpensOffline opens the page from a file in headless Chromium,
// which has no network here, and checks that the figure is drawn.
func TestHTMLOpensOffline(t *testing.T) {
	tab := browser.New(t)
	path := filepath.Join(t.TempDir(), "timeline.html")
	var buf bytes.Buffer
	if err := HTML(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := browser.Do(tab, 30*time.Second, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS("svg"))); err != nil {
		t.Fatal(err)
	}
	// The figure has its lines and its text: a blank page has neither.
	got, err := browser.Get(tab, 30*time.Second, chromedp.Evaluate[[]int](`(() => {
		const svg = document.querySelector("svg"), box = svg.getBoundingClientRect();
		return [Math.round(box.width), Math.round(box.height), svg.querySelectorAll("path").length, svg.querySelectorAll("text").length];
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] < 800 || got[1] < 400 || got[2] < 10 || got[3] < 10 {
		t.Fatalf("figure [width, height, paths, texts] = %v: not drawn", got)
	}
	if os.Getenv("TXORDER_CONSOLE_SCREENSHOTS") == "docs" {
		png, err := browser.Get(tab, 30*time.Second, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console", "chaos-timeline-html.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
