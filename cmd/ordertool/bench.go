package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/txorder/txorder/internal/bench"
	"github.com/txorder/txorder/internal/mqlog"
)

func runBench(ctx context.Context, env *environment, args []string) error {
	d := bench.DefaultConfig()
	fs := newFlagSet(env, "bench [flags]",
		"Starts its own MariaDB and Redis (temporary directories, free ports), RocketMQ servers\n"+
			"in-process and orderd / fulfillmentd from --bin, then measures against the same machine:\n"+
			"  placement   raw MySQL transaction vs POST /v1/orders at each --concurrency (ratio, p50/p95/p99)\n"+
			"  checkback   check-backs answered per second over K pending orders (--pending)\n"+
			"  degraded    placement with MySQL down (cache) and RocketMQ down (spill) vs normal\n"+
			"  recovery    cached orders back in MySQL; spill drain rate after the broker returns\n"+
			"  e2e         payment notification → shipment row latency at each --e2e-intervals, with the\n"+
			"              fast commit on and off (--e2e-fast-commit)\n"+
			"  replicas    throughput with 1, 2, 3 orderd replicas (--replicas), each process's CPU per\n"+
			"              1,000 placements, and payment → shipment with payment and placement on\n"+
			"              the same replica vs different ones\n"+
			"Prints the table with ratios and writes bench.json, bench.md and bench.png to --out.\n"+
			"Every run is bounded; the defaults finish in a few minutes on 2 cores (make bench).")
	bin := fs.String("bin", d.BinDir, "directory holding the orderd and fulfillmentd binaries")
	orderdCfg := fs.String("orderd-config", d.OrderdConfig, "orderd configuration file")
	fulfillCfg := fs.String("fulfillmentd-config", d.FulfillmentdConfig, "fulfillmentd configuration file")
	out := fs.String("out", d.OutDir, "output directory")
	sections := fs.String("only", "", "comma-separated sections to run (placement,checkback,degraded,recovery,e2e,replicas); empty: all")
	conc := fs.String("concurrency", joinInts(d.Concurrency), "placement concurrency levels")
	pd := fs.Duration("duration", d.PlacementDuration, "duration of each placement point (per side)")
	pending := fs.String("pending", joinInts(d.CheckPending), "K values (pending orders) of the check-back measurement")
	dd := fs.Duration("degraded-duration", d.DegradedDuration, "duration of the normal and degraded runs")
	interval := fs.Duration("check-interval", d.CheckInterval, "broker check interval of the main stack (recovery target: 2 of them)")
	cached := fs.Int("cached", d.CachedOrders, "orders placed while MySQL is down, before it returns")
	spilled := fs.Int("spilled", d.SpilledOrders, "orders placed while RocketMQ is down, before it returns")
	e2eIv := fs.String("e2e-intervals", joinDurations(d.E2EIntervals), "check intervals of the end-to-end latency runs")
	noView := fs.Bool("no-state-view", false, "check-backs without the order store's state view (every check reads MySQL), for comparison")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (load generator, in-process brokers and check-back listener) to this file")
	e2eN := fs.Int("e2e-orders", d.E2EOrders, "paid orders per end-to-end run")
	e2eFast := fs.String("e2e-fast-commit", "on,off", "fast-commit modes of the end-to-end runs, each at every interval (on, off or on,off)")
	noFast := fs.Bool("no-fast-commit", false, "run the placement, degraded and recovery stacks with the fast commit off, for comparison")
	noGroup := fs.Bool("no-group-commit", false, "run the placement, degraded and recovery stacks with grouped commits off (group_commit.enabled), for comparison")
	noDirect := fs.Bool("no-direct-send", false, "run the placement, degraded and recovery stacks with half messages sent through the client (rocketmq.direct_send false), for comparison")
	replicas := fs.String("replicas", joinInts(d.ReplicaCounts), "orderd replica counts of the replicas section")
	replicaDur := fs.Duration("replica-duration", d.ReplicaDuration, "duration of each replica count's load")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg := bench.Config{
		BinDir: *bin, OrderdConfig: *orderdCfg, FulfillmentdConfig: *fulfillCfg, OutDir: *out,
		PlacementDuration: *pd, DegradedDuration: *dd, CheckInterval: *interval, DegradedConcurrency: 32,
		CachedOrders: *cached, SpilledOrders: *spilled, E2EOrders: *e2eN, NoStateView: *noView, NoFastCommit: *noFast, NoGroupCommit: *noGroup,
		NoDirectSend:    *noDirect,
		ReplicaDuration: *replicaDur, Log: env.stderr,
	}
	var err error
	if *sections != "" {
		cfg.Sections = strings.Split(*sections, ",")
	}
	if cfg.Concurrency, err = parseInts(*conc); err != nil {
		return usageErr(env, "--concurrency", err)
	}
	if cfg.CheckPending, err = parseInts(*pending); err != nil {
		return usageErr(env, "--pending", err)
	}
	if cfg.E2EIntervals, err = parseDurations(*e2eIv); err != nil {
		return usageErr(env, "--e2e-intervals", err)
	}
	if cfg.ReplicaCounts, err = parseInts(*replicas); err != nil {
		return usageErr(env, "--replicas", err)
	}
	for _, m := range strings.Split(*e2eFast, ",") {
		switch strings.TrimSpace(m) {
		case "on":
			cfg.E2EFastCommit = append(cfg.E2EFastCommit, true)
		case "off":
			cfg.E2EFastCommit = append(cfg.E2EFastCommit, false)
		default:
			return usageErr(env, "--e2e-fast-commit", fmt.Errorf("%q is not on or off", m))
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(env, "flags", err)
	}
	// The RocketMQ client logs every placement and check through rlog;
	// the bench's own progress is what matters on the terminal.
	mqlog.Install(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, runErr := bench.Run(ctx, cfg)
	if rep == nil {
		return runErr
	}
	fmt.Fprintln(env.stdout)
	rep.Table(env.stdout)
	if err := rep.Write(*out); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "\nwrote %s/bench.json, bench.md, bench.png (process logs in %s/logs)\n", *out, *out)
	if runErr != nil {
		return runErr
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("%d section(s) failed: %s", len(rep.Errors), strings.Join(rep.Errors, "; "))
	}
	return nil
}

func usageErr(env *environment, what string, err error) error {
	fmt.Fprintf(env.stderr, "ordertool bench: %s: %v\n", what, err)
	return errUsage
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func joinDurations(v []time.Duration) string {
	s := make([]string, len(v))
	for i, d := range v {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}
