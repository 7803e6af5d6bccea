package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/txorder/txorder/internal/loadgen"
)

// ReplicaPoint is placement throughput with n orderd replicas sharing one
// MariaDB, one Redis and one RocketMQ, and what each process spent.
type ReplicaPoint struct {
	Replicas   int     `json:"replicas"`
	Placed     int     `json:"placed"`
	Throughput float64 `json:"placed_per_second"`
	Latency    Latency `json:"latency_ms"`
	FiveXX     int     `json:"five_xx"`
	// CPUPer1000 is each process's CPU time (user + system, from
	// /proc/<pid>/stat) per 1,000 placements, in seconds: orderd-1..n,
	// mariadbd, redis-server and "bench" (this process: the load
	// generator and the in-process RocketMQ broker).
	CPUPer1000 map[string]float64 `json:"cpu_seconds_per_1000"`
}

// ReplicaRun is the replicas section: throughput at each replica count,
// and payment → shipment latency with the placement and the payment on
// the same replica and on different ones.
type ReplicaRun struct {
	Concurrency   int            `json:"concurrency"`
	Points        []ReplicaPoint `json:"points"`
	CheckInterval float64        `json:"check_interval_seconds"`
	SameReplica   *Latency       `json:"e2e_same_replica_ms,omitempty"`
	CrossReplica  *Latency       `json:"e2e_cross_replica_ms,omitempty"`
	E2EOrders     int            `json:"e2e_orders"`
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime:
// 100 on every Linux architecture Go supports (the kernel's ABI constant).
const clockTicks = 100

// cpuSeconds reads a process's user + system CPU time from /proc.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start with field 3.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// startReplicas starts orderd processes 2..n beside the stack's own and
// returns every replica's URL and pid; stop the processes when done.
func startReplicas(ctx context.Context, cfg Config, s *stack, name string, n int) (urls []string, pids []int, procs []*process, err error) {
	urls, pids = []string{s.baseURL}, []int{s.orderd.cmd.Process.Pid}
	for k := 2; k <= n; k++ {
		port, err := freePort()
		if err != nil {
			return urls, pids, procs, err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		env := append(append([]string{}, s.env...), "TXORDER_HTTP__ADDR=127.0.0.1:"+strconv.Itoa(port),
			fmt.Sprintf("TXORDER_ROCKETMQ__INSTANCE_NAME=orderd-replicas-%d", k))
		p, err := startProcess(ctx, filepath.Join(cfg.BinDir, "orderd"), []string{"--config", cfg.OrderdConfig}, env,
			filepath.Join(cfg.OutDir, "logs", fmt.Sprintf("%s-orderd-%d.log", name, k)))
		if err != nil {
			return urls, pids, procs, err
		}
		procs = append(procs, p)
		if err := p.waitReady(ctx, url+"/readyz"); err != nil {
			return urls, pids, procs, fmt.Errorf("orderd-%d not ready: %w (log %s)", k, err, p.logPath)
		}
		urls = append(urls, url)
		pids = append(pids, p.cmd.Process.Pid)
	}
	return urls, pids, procs, nil
}

// measureReplicas starts up to the largest replica count of orderd
// processes on one stack (the first is the stack's own), and for each
// count runs a closed-loop load over that many replicas, reading every
// process's CPU time before and after.
func measureReplicas(ctx context.Context, cfg Config, s *stack, logf func(string, ...any)) (*ReplicaRun, error) {
	run := &ReplicaRun{Concurrency: cfg.ReplicaConcurrency, CheckInterval: cfg.ReplicaCheckInterval.Seconds(), E2EOrders: cfg.E2EOrders}
	maxN := 0
	for _, n := range cfg.ReplicaCounts {
		maxN = max(maxN, n)
	}
	urls, orderdPids, procs, err := startReplicas(ctx, cfg, s, "replicas", maxN)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		return run, err
	}
	pids := map[string]int{"mariadbd": s.in.my.Pid(), "redis-server": s.in.rd.Pid(), "bench": os.Getpid()}
	for k, pid := range orderdPids {
		pids[fmt.Sprintf("orderd-%d", k+1)] = pid
	}
	for _, n := range cfg.ReplicaCounts {
		if ctx.Err() != nil {
			return run, ctx.Err()
		}
		before := map[string]float64{}
		for name, pid := range pids {
			before[name], _ = cpuSeconds(pid)
		}
		res, err := loadgen.Run(ctx, loadgen.Config{URLs: urls[:n], APIKey: apiKey, Concurrency: cfg.ReplicaConcurrency,
			Duration: cfg.ReplicaDuration, ReadyPoll: time.Second})
		if err != nil {
			return run, err
		}
		sum := res.Summary
		pt := ReplicaPoint{Replicas: n, Placed: sum.Placed, Throughput: round3(sum.Throughput),
			Latency:    Latency{P50: sum.Place.P50, P95: sum.Place.P95, P99: sum.Place.P99, Max: sum.Place.Max},
			CPUPer1000: map[string]float64{}}
		for code, c := range sum.PlaceCodes {
			if strings.HasPrefix(code, "5") || code == "error" {
				pt.FiveXX += c
			}
		}
		for name, pid := range pids {
			after, err := cpuSeconds(pid)
			if err != nil || sum.Placed == 0 {
				continue
			}
			pt.CPUPer1000[name] = round3((after - before[name]) / float64(sum.Placed) * 1000)
		}
		run.Points = append(run.Points, pt)
		logf("replicas %d: %.0f placements/s (p50 %.1f ms, p99 %.1f ms, 5xx %d); CPU s per 1,000: %s",
			n, pt.Throughput, pt.Latency.P50, pt.Latency.P99, pt.FiveXX, cpuString(pt.CPUPer1000))
	}
	return run, nil
}

// measureReplicaE2E measures payment → shipment latency on three replicas
// with each payment sent to the replica that placed the order, and to
// another one.
func measureReplicaE2E(ctx context.Context, cfg Config, s *stack, run *ReplicaRun, logf func(string, ...any)) error {
	urls, _, procs, err := startReplicas(ctx, cfg, s, "replicas-e2e", 3)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		return err
	}
	same, err := e2eLatency(ctx, cfg, s, urls[:1])
	if err != nil {
		return fmt.Errorf("e2e on one replica: %w", err)
	}
	cross, err := e2eLatency(ctx, cfg, s, urls)
	if err != nil {
		return fmt.Errorf("e2e across replicas: %w", err)
	}
	run.SameReplica, run.CrossReplica = &same, &cross
	logf("payment → shipment at a %s check interval: placement and payment on one replica p50 %.0f ms p95 %.0f ms max %.0f ms; on different replicas p50 %.0f ms p95 %.0f ms max %.0f ms",
		cfg.ReplicaCheckInterval, same.P50, same.P95, same.Max, cross.P50, cross.P95, cross.Max)
	return nil
}

// e2eLatency places and pays E2EOrders orders over urls (each payment to
// another replica than its placement when there are several) and returns
// the latency from each payment's 200 to its shipment row.
func e2eLatency(ctx context.Context, cfg Config, s *stack, urls []string) (Latency, error) {
	var mu sync.Mutex
	paidAt := map[string]time.Time{}
	spread := 2*cfg.ReplicaCheckInterval + time.Second
	_, err := loadgen.Run(ctx, loadgen.Config{URLs: urls, APIKey: apiKey, WebhookSecret: webhookSecret, PayFraction: 1,
		Rate: float64(cfg.E2EOrders) / spread.Seconds(), Concurrency: 8, Count: cfg.E2EOrders, Duration: spread + 30*time.Second,
		ReadyPoll: time.Second,
		OnResult: func(o loadgen.Outcome) {
			if o.Paid {
				mu.Lock()
				paidAt[strings.ToLower(o.OrderID)] = time.Now()
				mu.Unlock()
			}
		}})
	if err != nil {
		return Latency{}, err
	}
	shipped := s.waitShipped(ctx, paidAt, time.Now().Add(4*cfg.ReplicaCheckInterval+30*time.Second))
	var ms []float64
	for id, paid := range paidAt {
		if at, ok := shipped[id]; ok {
			ms = append(ms, float64(at.Sub(paid).Microseconds())/1000)
		}
	}
	if len(ms) < len(paidAt) {
		return summarize(ms), fmt.Errorf("%d of %d paid orders shipped within the bound", len(ms), len(paidAt))
	}
	return summarize(ms), nil
}

func cpuString(m map[string]float64) string {
	var parts []string
	for _, name := range cpuNames(m) {
		parts = append(parts, fmt.Sprintf("%s %.3f", name, m[name]))
	}
	return strings.Join(parts, ", ")
}

// cpuNames orders the processes: orderd replicas first, then the others.
func cpuNames(m map[string]float64) []string {
	var names []string
	for k := 1; k <= 9; k++ {
		if _, ok := m[fmt.Sprintf("orderd-%d", k)]; ok {
			names = append(names, fmt.Sprintf("orderd-%d", k))
		}
	}
	for _, name := range []string{"mariadbd", "redis-server", "bench"} {
		if _, ok := m[name]; ok {
			names = append(names, name)
		}
	}
	return names
}

// replicasMarkdown renders the section for bench.md.
func (r *ReplicaRun) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "### 6. Several orderd replicas (one MariaDB, Redis and RocketMQ; concurrency %d)\n\n", r.Concurrency)
	b.WriteString("| replicas | placements/s | p50 / p99 ms | 5xx | CPU s per 1,000 placements, by process |\n|---:|---:|---|---:|---|\n")
	for _, p := range r.Points {
		fmt.Fprintf(b, "| %d | **%.0f** | %.1f / %.1f | %d | %s |\n", p.Replicas, p.Throughput, p.Latency.P50, p.Latency.P99,
			p.FiveXX, cpuString(p.CPUPer1000))
	}
	if r.SameReplica != nil && r.CrossReplica != nil {
		fmt.Fprintf(b, "\nPayment → shipment at a %.0f s check interval, %d orders each: placement and payment on one replica p50 %.0f / p95 %.0f / max %.0f ms; on different replicas p50 %.0f / p95 %.0f / max %.0f ms.\n",
			r.CheckInterval, r.E2EOrders, r.SameReplica.P50, r.SameReplica.P95, r.SameReplica.Max,
			r.CrossReplica.P50, r.CrossReplica.P95, r.CrossReplica.Max)
	}
	b.WriteString("\n")
}
