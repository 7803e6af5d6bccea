package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/loadgen"
)

func runLoad(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "load (--count N | --duration D) [flags]",
		"Places orders on orderd at a rate or a concurrency, pays a fraction of them through\n"+
			"the signed payment webhook (secret: TXORDER_PAYMENT__WEBHOOK_SECRET or\n"+
			"payment.webhook_secret_file), and writes the ids of the accepted orders (201/202)\n"+
			"and a summary (p50/p95/p99 latencies, status codes, a per-second timeline of\n"+
			"201/202/503/other). A progress bar is drawn on stderr when it is a terminal.\n"+
			"Ctrl-C stops placing, waits for the requests in flight and still writes both files.\n"+
			"Then: ordertool audit --accepted <file> --settle 30s.")
	configPath := fs.String("config", env.configPath("orderd"), "orderd configuration file (webhook secret, API keys, http.addr; empty: defaults and environment only; default .run/orderd.yaml after make run)")
	baseURL := fs.String("url", "", "orderd base URL (default: from http.addr of the configuration)")
	apiKey := fs.String("api-key", "", "API key (default: $"+envAPIKey+", else the first key of auth.api_keys, else the development key)")
	rate := fs.Float64("rate", 0, "placements started per second (0: as fast as --concurrency allows)")
	concurrency := fs.Int("concurrency", 8, "requests in flight at most")
	count := fs.Int("count", 0, "stop after this many placements")
	duration := fs.Duration("duration", 0, "stop after this long")
	pay := fs.Float64("pay", 1, "fraction of the accepted (201/202) orders to pay at once, 0..1")
	payRetry := fs.Duration("pay-retry", 30*time.Second, "keep retrying a payment answered 404 (order not in MySQL yet), 503 or not at all for this long, as a provider does")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of each HTTP request")
	acceptedOut := fs.String("accepted-out", "load-accepted.txt", "file for the ids of accepted orders, one per line")
	summaryOut := fs.String("summary-out", "load-summary.json", "file for the JSON summary")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if *count <= 0 && *duration <= 0 {
		fmt.Fprintln(env.stderr, "ordertool load: refusing an unbounded run: give --count or --duration (or both)")
		return errUsage
	}
	if *concurrency < 1 || *concurrency > 10000 {
		fmt.Fprintln(env.stderr, "ordertool load: --concurrency must be 1..10000")
		return errUsage
	}
	cfg, err := configs.LoadOrderd(*configPath, configs.WithoutFulfillment(env.environ))
	if err != nil {
		return err
	}
	key := *apiKey
	if key == "" {
		key = defaultAPIKey(env.environ, cfg.Auth.APIKeys)
	}
	lc := loadgen.Config{
		BaseURL: cmp.Or(*baseURL, orderdURL(cfg.HTTP.Addr)), APIKey: key, WebhookSecret: cfg.Payment.WebhookSecret,
		Rate: *rate, Concurrency: *concurrency, Count: *count, Duration: *duration,
		PayFraction: *pay, PayRetryFor: *payRetry, Timeout: *timeout,
	}
	if err := lc.Validate(); err != nil {
		if *pay > 0 && cfg.Payment.WebhookSecret == "" {
			return fmt.Errorf("%w: set %s (or payment.webhook_secret_file) to orderd's secret, or pass --pay 0",
				err, configs.EnvName("payment.webhook_secret"))
		}
		return err
	}
	if bar := newBar(env.stderr, *count); bar != nil {
		lc.OnResult = func(loadgen.Outcome) { _ = bar.Add(1) }
		defer func() { _ = bar.Finish() }()
	}
	res, err := loadgen.Run(ctx, lc)
	if err != nil {
		return err
	}
	if err := writeAccepted(*acceptedOut, res.Accepted); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res.Summary, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*summaryOut, append(b, '\n'), 0o644); err != nil {
		return err
	}
	printSummary(env.stdout, res.Summary)
	fmt.Fprintf(env.stdout, "wrote %s (%d ids) and %s\n", *acceptedOut, len(res.Accepted), *summaryOut)
	if res.Summary.Interrupted {
		return fmt.Errorf("interrupted after %d placements (results written)", res.Summary.Placed)
	}
	return nil
}

// newBar returns a progress bar on w when w is a terminal, else nil (no
// escape codes in logs and files).
func newBar(w io.Writer, count int) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	max := int64(count)
	if count <= 0 {
		max = -1 // duration-bound: a spinner with a count
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("placing orders"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("orders"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func writeAccepted(path string, ids []string) error {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func printSummary(w io.Writer, s loadgen.Summary) {
	fmt.Fprintf(w, "placed %d orders in %.1fs (%.1f/s), accepted %d, paid %d\n", s.Placed, s.Elapsed, s.Throughput, s.Accepted, s.Paid)
	fmt.Fprintf(w, "place: %s  latency ms p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n", codes(s.PlaceCodes), s.Place.P50, s.Place.P95, s.Place.P99, s.Place.Max)
	if s.Pay.Count > 0 {
		fmt.Fprintf(w, "pay:   %s  latency ms p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n", codes(s.PayCodes), s.Pay.P50, s.Pay.P95, s.Pay.P99, s.Pay.Max)
	}
}

func codes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
