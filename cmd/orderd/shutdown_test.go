package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadinessDownBeforeListenerCloses: on shutdown orderd first answers
// /readyz 503 ("serving" down) while it still serves placements, with
// "Connection: close" on its answers, for http.drain_delay; only then does the listener
// close. A load balancer polling /readyz therefore stops sending before a
// connection is refused.
func TestReadinessDownBeforeListenerCloses(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.cfg.HTTP.DrainDelay = 1500 * time.Millisecond
	m := s.orderd()
	addr := m.Addr()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	probe := func() string {
		res, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			return "refused"
		}
		defer res.Body.Close()
		var body struct {
			Status string
			Checks map[string]struct{ Status, Error string }
		}
		_ = json.NewDecoder(res.Body).Decode(&body)
		if res.StatusCode == http.StatusServiceUnavailable && body.Checks["serving"].Status == "down" {
			return "draining"
		}
		return strconv.Itoa(res.StatusCode) + " " + body.Status
	}
	seen := []string{probe()} // each change of what /readyz answers, in order
	if seen[0] != "200 ready" {
		t.Fatalf("readyz before shutdown = %s, want 200 ready", seen[0])
	}

	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	placedWhileDraining := 0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got := probe()
		if seen[len(seen)-1] != got {
			seen = append(seen, got)
		}
		if got == "draining" && placedWhileDraining == 0 {
			// Still served while draining, and told to close the connection.
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/orders", strings.NewReader(orderBody))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "during-drain")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("placement while draining: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusCreated || !res.Close {
				t.Fatalf("placement while draining = %d, Connection: close %v; want 201 and close", res.StatusCode, res.Close)
			}
			placedWhileDraining++
		}
		if got == "refused" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	want := []string{"200 ready", "draining", "refused"}
	if len(seen) != len(want) {
		t.Fatalf("readyz went %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("readyz went %v, want %v", seen, want)
		}
	}
	if placedWhileDraining != 1 || s.rowStatus(firstOrderIDOf(t, s)) != "PENDING_PAYMENT" {
		t.Fatal("the order placed while draining was not stored")
	}
}

func firstOrderIDOf(t testing.TB, s *stack) string {
	t.Helper()
	id := s.firstOrderID()
	if id == "" {
		t.Fatal("no order in the database")
	}
	return id
}
