// Package bench measures txorder against the physical limit of the machine
// it runs on, in one run, and reports ratios: placement through orderd
// against the raw MySQL transaction it wraps, check-back capacity with many
// pending orders, placement with MySQL or RocketMQ down against normal,
// recovery after an outage, and end-to-end latency from payment to the
// fulfillment shipment row. It starts its own MariaDB and Redis (through
// internal/testenv), RocketMQ servers in-process (internal/rmqtest) and
// orderd / fulfillmentd as processes from the built binaries. Every run is
// bounded in count and time.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Config describes a run. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// BinDir holds the orderd and fulfillmentd binaries (make build: bin).
	BinDir string
	// OrderdConfig and FulfillmentdConfig are the YAML files the processes
	// start with (everything that matters is overridden by environment).
	OrderdConfig, FulfillmentdConfig string
	// OutDir receives bench.json, bench.md, bench.png and the process logs.
	OutDir string
	// Sections to run, of "placement", "checkback", "degraded",
	// "recovery", "e2e", "replicas"; empty runs all.
	Sections []string

	// Concurrency levels of the placement comparison, each run for
	// PlacementDuration per side.
	Concurrency       []int
	PlacementDuration time.Duration
	// CheckPending are the K values (pending orders) of the check-back
	// capacity measurement.
	CheckPending []int
	// DegradedConcurrency and DegradedDuration size the degraded runs.
	DegradedConcurrency int
	DegradedDuration    time.Duration
	// CheckInterval is the broker's check interval of the main stack; the
	// recovery target is 2 of them.
	CheckInterval time.Duration
	// CachedOrders are placed while MySQL is down before it returns;
	// SpilledOrders while RocketMQ is down before it returns.
	CachedOrders, SpilledOrders int
	// E2EIntervals are the check intervals the end-to-end latency is
	// measured at, with E2EOrders paid orders each, once with the fast
	// commit on and once with it off for each mode in E2EFastCommit.
	E2EIntervals  []time.Duration
	E2EOrders     int
	E2EFastCommit []bool

	// NoFastCommit runs the placement, degraded and recovery stacks with
	// the fast commit off (no coordinates recorded), for before/after
	// comparisons of placement cost.
	NoFastCommit bool

	// NoGroupCommit runs the placement, degraded and recovery stacks with
	// grouped commits off (orderd's group_commit.enabled), for comparison.
	// The raw baseline is one transaction per order either way: grouping
	// is measured against it.
	NoGroupCommit bool

	// NoDirectSend runs the placement, degraded and recovery stacks with
	// the half message sent through the client (rocketmq.direct_send
	// false), for comparison.
	NoDirectSend bool

	// ReplicaCounts are the orderd replica counts of the replicas section,
	// each loaded at ReplicaConcurrency for ReplicaDuration; its payment →
	// shipment runs use ReplicaCheckInterval and E2EOrders.
	ReplicaCounts        []int
	ReplicaConcurrency   int
	ReplicaDuration      time.Duration
	ReplicaCheckInterval time.Duration

	// NoStateView measures check-backs with the order store's state view
	// off (every check reads MySQL), for before/after comparisons.
	NoStateView bool

	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// DefaultConfig is sized for `make bench` on a 2-core machine: well under
// 10 minutes.
func DefaultConfig() Config {
	return Config{
		BinDir: "bin", OrderdConfig: "configs/orderd.yaml", FulfillmentdConfig: "configs/fulfillmentd.yaml",
		OutDir:               ".bench",
		Concurrency:          []int{1, 8, 32, 128},
		PlacementDuration:    8 * time.Second,
		CheckPending:         []int{10000, 100000},
		DegradedConcurrency:  32,
		DegradedDuration:     8 * time.Second,
		CheckInterval:        30 * time.Second,
		CachedOrders:         10000,
		SpilledOrders:        10000,
		E2EIntervals:         []time.Duration{5 * time.Second, 30 * time.Second, time.Minute},
		E2EOrders:            100,
		E2EFastCommit:        []bool{true, false},
		ReplicaCounts:        []int{1, 2, 3},
		ReplicaConcurrency:   32,
		ReplicaDuration:      10 * time.Second,
		ReplicaCheckInterval: 2 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BinDir == "" {
		c.BinDir = d.BinDir
	}
	if c.OrderdConfig == "" {
		c.OrderdConfig = d.OrderdConfig
	}
	if c.FulfillmentdConfig == "" {
		c.FulfillmentdConfig = d.FulfillmentdConfig
	}
	if c.OutDir == "" {
		c.OutDir = d.OutDir
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.PlacementDuration <= 0 {
		c.PlacementDuration = d.PlacementDuration
	}
	if len(c.CheckPending) == 0 {
		c.CheckPending = d.CheckPending
	}
	if c.DegradedConcurrency <= 0 {
		c.DegradedConcurrency = d.DegradedConcurrency
	}
	if c.DegradedDuration <= 0 {
		c.DegradedDuration = d.DegradedDuration
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = d.CheckInterval
	}
	if c.CachedOrders <= 0 {
		c.CachedOrders = d.CachedOrders
	}
	if c.SpilledOrders <= 0 {
		c.SpilledOrders = d.SpilledOrders
	}
	if len(c.E2EIntervals) == 0 {
		c.E2EIntervals = d.E2EIntervals
	}
	if c.E2EOrders <= 0 {
		c.E2EOrders = d.E2EOrders
	}
	if len(c.E2EFastCommit) == 0 {
		c.E2EFastCommit = d.E2EFastCommit
	}
	if len(c.ReplicaCounts) == 0 {
		c.ReplicaCounts = d.ReplicaCounts
	}
	if c.ReplicaConcurrency <= 0 {
		c.ReplicaConcurrency = d.ReplicaConcurrency
	}
	if c.ReplicaDuration <= 0 {
		c.ReplicaDuration = d.ReplicaDuration
	}
	if c.ReplicaCheckInterval <= 0 {
		c.ReplicaCheckInterval = d.ReplicaCheckInterval
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Sections lists the measurements in run order.
var Sections = []string{"placement", "checkback", "degraded", "recovery", "e2e", "replicas"}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	var errs []error
	for _, s := range c.Sections {
		if !contains(Sections, s) {
			errs = append(errs, fmt.Errorf("unknown section %q (want %s)", s, strings.Join(Sections, ", ")))
		}
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > 1024 {
			errs = append(errs, fmt.Errorf("concurrency %d out of 1..1024", n))
		}
	}
	for _, k := range c.CheckPending {
		if k < 1 || k > 1000000 {
			errs = append(errs, fmt.Errorf("pending orders %d out of 1..1000000", k))
		}
	}
	for _, iv := range c.E2EIntervals {
		if iv < 100*time.Millisecond || iv > time.Minute {
			errs = append(errs, fmt.Errorf("e2e interval %s out of 100ms..1m", iv))
		}
	}
	for _, n := range c.ReplicaCounts {
		if n < 1 || n > 9 {
			errs = append(errs, fmt.Errorf("replica count %d out of 1..9", n))
		}
	}
	if c.PlacementDuration > 5*time.Minute || c.DegradedDuration > 5*time.Minute || c.ReplicaDuration > 5*time.Minute {
		errs = append(errs, errors.New("durations are capped at 5m"))
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Machine describes where the run happened.
type Machine struct {
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	Go       string `json:"go"`
	MariaDB  string `json:"mariadb,omitempty"`
}

// Report is everything a run measured.
type Report struct {
	Machine Machine   `json:"machine"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// GroupCommit, DirectSend and FastCommit are orderd's settings in the run.
	GroupCommit bool             `json:"group_commit"`
	DirectSend  bool             `json:"direct_send"`
	FastCommit  bool             `json:"fast_commit"`
	Placement   []PlacementPoint `json:"placement,omitempty"`
	CheckBack   []CheckPoint     `json:"checkback,omitempty"`
	Degraded    *Degraded        `json:"degraded,omitempty"`
	Recovery    *Recovery        `json:"recovery,omitempty"`
	EndToEnd    []E2EPoint       `json:"end_to_end,omitempty"`
	Replicas    *ReplicaRun      `json:"replicas,omitempty"`
	// Errors lists sections that failed, with why.
	Errors []string `json:"errors,omitempty"`
}

// Run runs the configured sections and returns what they measured; a
// section that fails is recorded in Report.Errors and the others still run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	rep := &Report{Machine: machine(), Started: time.Now().UTC(), GroupCommit: !cfg.NoGroupCommit, FastCommit: !cfg.NoFastCommit,
		DirectSend: !cfg.NoDirectSend}
	logf("starting mariadbd and redis-server")
	in, err := startInfra()
	if err != nil {
		return nil, err
	}
	defer in.close()
	rep.Machine.MariaDB = mariadbVersion(ctx, in)
	want := func(s string) bool { return len(cfg.Sections) == 0 || contains(cfg.Sections, s) }
	fail := func(section string, err error) {
		logf("%s failed: %v", section, err)
		rep.Errors = append(rep.Errors, section+": "+err.Error())
	}
	if want("placement") {
		logf("placement: raw MySQL transaction vs POST /v1/orders, %s per point (fast commit %s, group commit %s, direct send %s)",
			cfg.PlacementDuration, onOff(!cfg.NoFastCommit), onOff(!cfg.NoGroupCommit), onOff(!cfg.NoDirectSend))
		if err := withStack(ctx, cfg, in, stackOptions{name: "placement", database: "bench_placement", redisDB: 1,
			checkInterval: cfg.CheckInterval, fastCommitOff: cfg.NoFastCommit, groupCommitOff: cfg.NoGroupCommit, directSendOff: cfg.NoDirectSend, brokerProcess: true}, func(s *stack) error {
			var err error
			rep.Placement, err = measurePlacement(ctx, cfg, s, logf)
			return err
		}); err != nil {
			fail("placement", err)
		}
	}
	if want("checkback") && ctx.Err() == nil {
		logf("check-back capacity: K pending orders, one check round, answered one at a time")
		var err error
		if rep.CheckBack, err = measureCheckBack(ctx, cfg, in, logf); err != nil {
			fail("checkback", err)
		}
	}
	if (want("degraded") || want("recovery")) && ctx.Err() == nil {
		logf("degraded modes and recovery")
		if err := withStack(ctx, cfg, in, stackOptions{name: "degraded", database: "bench_degraded", redisDB: 2,
			checkInterval: cfg.CheckInterval, fastCommitOff: cfg.NoFastCommit, groupCommitOff: cfg.NoGroupCommit, directSendOff: cfg.NoDirectSend}, func(s *stack) error {
			var err error
			rep.Degraded, rep.Recovery, err = measureDegraded(ctx, cfg, s, want("degraded"), want("recovery"), logf)
			return err
		}); err != nil {
			fail("degraded", err)
		}
	}
	if want("e2e") && ctx.Err() == nil {
		logf("end-to-end latency: payment notification → shipment row, fast commit on and off")
		cell := 0
		for _, iv := range cfg.E2EIntervals {
			for _, fast := range cfg.E2EFastCommit {
				if ctx.Err() != nil {
					break
				}
				err := withStack(ctx, cfg, in, stackOptions{name: fmt.Sprintf("e2e-%d", cell), database: fmt.Sprintf("bench_e2e_%d", cell),
					redisDB: 3 + cell%10, checkInterval: iv, fulfillment: true, fastCommitOff: !fast,
					// orderd requires send + execute + redis timeouts < transaction timeout.
					extraEnv: []string{"TXORDER_ROCKETMQ__SEND_TIMEOUT=300ms", "TXORDER_TRANSACTION__EXECUTE_TIMEOUT=400ms", "TXORDER_REDIS__TIMEOUT=200ms"}}, func(s *stack) error {
					p, err := measureE2E(ctx, cfg, s, iv, fast, logf)
					rep.EndToEnd = append(rep.EndToEnd, p)
					return err
				})
				if err != nil {
					fail("e2e", err)
				}
				cell++
			}
		}
	}
	if want("replicas") && ctx.Err() == nil {
		logf("replicas: placements over 1..%d orderd replicas sharing one MariaDB, Redis and RocketMQ, %s each",
			cfg.ReplicaCounts[len(cfg.ReplicaCounts)-1], cfg.ReplicaDuration)
		// No check-back during the throughput runs (their orders stay
		// unpaid): a check round over every pending order would grow from
		// one point to the next and land on all replicas.
		err := withStack(ctx, cfg, in, stackOptions{name: "replicas", database: "bench_replicas", redisDB: 14,
			checkInterval: 10 * time.Minute}, func(s *stack) error {
			var err error
			rep.Replicas, err = measureReplicas(ctx, cfg, s, logf)
			return err
		})
		if err == nil && rep.Replicas != nil && ctx.Err() == nil {
			err = withStack(ctx, cfg, in, stackOptions{name: "replicas-e2e", database: "bench_replicas_e2e", redisDB: 15,
				checkInterval: cfg.ReplicaCheckInterval, fulfillment: true,
				// orderd requires send + execute + redis timeouts < transaction timeout.
				extraEnv: []string{"TXORDER_ROCKETMQ__SEND_TIMEOUT=300ms", "TXORDER_TRANSACTION__EXECUTE_TIMEOUT=400ms", "TXORDER_REDIS__TIMEOUT=200ms"}}, func(s *stack) error {
				return measureReplicaE2E(ctx, cfg, s, rep.Replicas, logf)
			})
		}
		if err != nil {
			fail("replicas", err)
		}
	}
	rep.Seconds = round3(time.Since(rep.Started).Seconds())
	return rep, ctx.Err()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func withStack(ctx context.Context, cfg Config, in *infra, o stackOptions, fn func(*stack) error) error {
	s, err := newStack(ctx, cfg, in, o)
	if err != nil {
		return err
	}
	defer s.close()
	return fn(s)
}

func machine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					m.CPUModel = strings.TrimSpace(v)
					break
				}
			}
		}
	}
	return m
}

func mariadbVersion(ctx context.Context, in *infra) string {
	s, err := newDB(in, "")
	if err != nil {
		return ""
	}
	defer s.Close()
	var v string
	_ = s.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v)
	return v
}
