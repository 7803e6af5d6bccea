package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/txorder/txorder/internal/loadgen"
)

func TestLoadWritesIDsAndSummary(t *testing.T) {
	var paid atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/orders":
			if r.Header.Get("Authorization") != "Bearer cli-load-key-0123456789" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"` + uuid.NewString() + `"}`))
		case "/v1/payments/notify":
			if r.Header.Get("X-Signature") == "" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			paid.Add(1)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ids, summary := filepath.Join(dir, "ids.txt"), filepath.Join(dir, "summary.json")
	env := []string{envAPIKey + "=cli-load-key-0123456789", "TXORDER_PAYMENT__WEBHOOK_SECRET=cli-load-secret-0123456789abcdefghij"}
	code, out, errOut := runTool(t, env, "load", "--config", "", "--url", srv.URL, "--count", "25", "--concurrency", "3",
		"--pay", "0.4", "--accepted-out", ids, "--summary-out", summary)
	if code != 0 || !strings.Contains(out, "placed 25 orders") || !strings.Contains(out, "201×25") {
		t.Fatalf("load = %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "placing orders") {
		t.Fatalf("a progress bar was drawn on a stderr that is not a terminal: %q", errOut)
	}
	b, _ := os.ReadFile(ids)
	if lines := strings.Fields(string(b)); len(lines) != 25 {
		t.Fatalf("accepted ids file has %d ids, want 25", len(lines))
	}
	var s loadgen.Summary
	b, _ = os.ReadFile(summary)
	if err := json.Unmarshal(b, &s); err != nil || s.Placed != 25 || s.Paid != 10 || paid.Load() != 10 {
		t.Fatalf("summary = %+v (%v), server saw %d payments; want 25 placed, 10 paid", s, err, paid.Load())
	}
}

func TestLoadRefuses(t *testing.T) {
	cases := []struct {
		args     []string
		env      []string
		wantCode int
		wantText string
	}{
		{[]string{"load", "--config", ""}, nil, 2, "refusing an unbounded run"},
		{[]string{"load", "--config", "", "--count", "5", "--concurrency", "0"}, nil, 2, "--concurrency"},
		{[]string{"load", "--config", "", "--count", "5", "--pay", "1"}, nil, 1, "TXORDER_PAYMENT__WEBHOOK_SECRET"},
		{[]string{"load", "--config", "", "--count", "5", "--pay", "2", "--url", "http://127.0.0.1:1"}, []string{"TXORDER_PAYMENT__WEBHOOK_SECRET=cli-load-secret-0123456789abcdefghij"}, 1, "not in [0, 1]"},
		{[]string{"load", "extra", "--count", "5"}, nil, 2, "unexpected argument"},
	}
	for _, tc := range cases {
		code, out, errOut := runTool(t, tc.env, tc.args...)
		if code != tc.wantCode || !strings.Contains(out+errOut, tc.wantText) {
			t.Errorf("%v = %d %q %q, want %d and %q", tc.args, code, out, errOut, tc.wantCode, tc.wantText)
		}
	}
}

// TestLoadOverReplicas: with several --url the load spreads over them and
// prints one line per replica, which the chaos report copies.
func TestLoadOverReplicas(t *testing.T) {
	var hits [2]atomic.Int64
	var urls []string
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/readyz":
			case "/v1/orders":
				hits[i].Add(1)
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte(`{"id":"` + uuid.NewString() + `"}`))
			}
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.json")
	code, out, errOut := runTool(t, []string{envAPIKey + "=cli-load-key-0123456789"}, "load", "--config", "",
		"--url", strings.Join(urls, ","), "--count", "20", "--pay", "0",
		"--accepted-out", filepath.Join(dir, "ids.txt"), "--summary-out", summary)
	if code != 0 {
		t.Fatalf("load = %d\n%s%s", code, out, errOut)
	}
	for i, u := range urls {
		if hits[i].Load() == 0 || !strings.Contains(out, "replica "+u+" place: 201×") {
			t.Errorf("replica %s: %d placements; output:\n%s", u, hits[i].Load(), out)
		}
	}
	var s loadgen.Summary
	b, _ := os.ReadFile(summary)
	if err := json.Unmarshal(b, &s); err != nil || len(s.Replicas) != 2 || s.Replicas[0].PlaceCodes["201"]+s.Replicas[1].PlaceCodes["201"] != 20 {
		t.Fatalf("summary replicas = %+v (%v), want 2 sharing 20 placements", s.Replicas, err)
	}
}
