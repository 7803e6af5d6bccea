package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/api"
)

const adminKey = "admin-key-0123456789abcdef"

// syncWriter is a log sink a test reads while handlers write to it.
type syncWriter struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestReadyzHidesDetails (issue 12, finding 8): /readyz says up or down to
// anyone; why a dependency is down (an error naming its address) is shown
// to admin keys only, and logged once when it goes down and once when it
// comes back.
func TestReadyzHidesDetails(t *testing.T) {
	// A real refused connection: a port that was just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var healed atomic.Bool
	probe := func(ctx context.Context) error {
		if healed.Load() {
			return nil
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	logs := &syncWriter{}
	h, err := api.NewHandler(api.Config{
		Orders: nopOrders{}, Clients: map[string]string{apiKey: "demo"}, Admins: map[string]string{adminKey: "ops"},
		Checks:   []api.Check{{Name: "mysql", Required: true, Probe: func(context.Context) error { return nil }}, {Name: "rocketmq", Probe: probe}},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	readyz := func(key string) (int, map[string]struct{ Status, Error string }, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/readyz", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Checks map[string]struct{ Status, Error string }
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(body)
		return res.StatusCode, body.Checks, string(b)
	}
	for _, key := range []string{"", apiKey, "wrong-key-0123456789abcdef"} {
		code, checks, raw := readyz(key)
		if code != 200 || checks["rocketmq"].Status != "down" || checks["mysql"].Status != "up" {
			t.Fatalf("readyz (key %q) = %d %s, want 200 with rocketmq down", key, code, raw)
		}
		if strings.Contains(raw, "127.0.0.1") || strings.Contains(raw, "refused") || checks["rocketmq"].Error != "" {
			t.Fatalf("readyz (key %q) shows details: %s", key, raw)
		}
	}
	_, checks, raw := readyz(adminKey)
	if !strings.Contains(checks["rocketmq"].Error, addr) {
		t.Fatalf("readyz for an admin = %s, want the error naming %s", raw, addr)
	}
	healed.Store(true)
	readyz("")
	readyz("")
	log := logs.String()
	if n := strings.Count(log, `msg="dependency down"`); n != 1 || !strings.Contains(log, addr) {
		t.Fatalf("log has %d 'dependency down' lines, want 1 naming %s:\n%s", n, addr, log)
	}
	if n := strings.Count(log, `msg="dependency up again"`); n != 1 {
		t.Fatalf("log has %d 'dependency up again' lines, want 1:\n%s", n, log)
	}
}
