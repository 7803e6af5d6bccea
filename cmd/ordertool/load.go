package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
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
			"With several --url (replicas), each placement goes to the next replica whose\n"+
			"/readyz answers 200 (polled like a load balancer), each payment to another\n"+
			"replica than its placement, and the summary counts answers per replica.\n"+
			"Ctrl-C stops placing, waits for the requests in flight and still writes both files.\n"+
			"Then: ordertool audit --accepted <file> --settle 30s.")
	configPath := fs.String("config", env.configPath("orderd"), "orderd configuration file (webhook secret, API keys, http.addr; empty: defaults and environment only; default .run/orderd.yaml after make run)")
	baseURL := fs.String("url", "", "orderd base URL, or several comma-separated (replicas; scripts/devstack.sh urls prints them) (default: from http.addr of the configuration)")
	apiKey := fs.String("api-key", "", "API key (default: $"+envAPIKey+", else the first key of auth.api_keys, else the development key)")
	rate := fs.Float64("rate", 0, "placements started per second (0: as fast as --concurrency allows)")
	concurrency := fs.Int("concurrency", 8, "requests in flight at most")
	count := fs.Int("count", 0, "stop after this many placements")
	duration := fs.Duration("duration", 0, "stop after this long")
	pay := fs.Float64("pay", 1, "fraction of the accepted (201/202) orders to pay at once, 0..1")
	payRetry := fs.Duration("pay-retry", 30*time.Second, "keep retrying a payment answered 404 (order not in MySQL yet), 503 or not at all for this long, as a provider does")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of each HTTP request")
	retryFor := fs.Duration("retry-for", 0, "retry a placement that got no answer, 503 or 409 idempotency_key_in_progress with the same key (on the next ready replica) for this long, as a client should; 0: one attempt")
	readyPoll := fs.Duration("ready-poll", 250*time.Millisecond, "with several --url: how often each replica's /readyz is polled")
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
		URLs: splitList(cmp.Or(*baseURL, orderdURL(cfg.HTTP.Addr))), APIKey: key, WebhookSecret: cfg.Payment.WebhookSecret,
		Rate: *rate, Concurrency: *concurrency, Count: *count, Duration: *duration,
		PayFraction: *pay, PayRetryFor: *payRetry, Timeout: *timeout, RetryFor: *retryFor, ReadyPoll: *readyPoll,
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
	if s.Retried > 0 {
		fmt.Fprintf(w, "retried %d placements with the same key (final answers above)\n", s.Retried)
	}
	if len(s.Replicas) > 1 {
		// One line per replica, every attempt it answered (or did not):
		// chaos/lib.sh copies these lines into the run's summary.
		for _, r := range s.Replicas {
			p := r.PlaceCodes
			fmt.Fprintf(w, "replica %s place: 201×%d 202×%d 200×%d 409×%d 503×%d no-answer×%d other×%d  pay: %s\n", r.URL,
				p["201"], p["202"], p["200"], p["409"], p["503"], p["error"],
				others(p, "201", "202", "200", "409", "503", "error"), codes(r.PayCodes))
		}
	}
}

// others sums the counts of m whose key is not listed.
func others(m map[string]int, listed ...string) int {
	n := 0
	for k, v := range m {
		if !slices.Contains(listed, k) {
			n += v
		}
	}
	return n
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
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
