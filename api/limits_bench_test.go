package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/api"
)

// BenchmarkAdmission measures what the rate limiter and the in-flight
// bound add to a request, without the network and without a store: GET of
// an order the (no-op) service does not have, through the whole router,
// with limits off and on (a bucket that never runs dry). The difference is
// their cost per request; compare it with a placement's (docs/performance.md).
func BenchmarkAdmission(b *testing.B) {
	for _, tc := range []struct {
		name   string
		limits api.Limits
	}{
		{"limits=off", api.Limits{}},
		{"limits=on", api.Limits{Rate: 1e9, Burst: 1e9, MaxInFlight: 256}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, err := api.NewHandler(api.Config{
				Orders: nopOrders{}, Clients: map[string]string{apiKey: "demo", otherKey: "other"},
				Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Limits: tc.limits,
			})
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/v1/orders/0190a0c8-0000-7000-8000-000000000000", nil)
			req.Header.Set("Authorization", "Bearer "+apiKey)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusNotFound {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
