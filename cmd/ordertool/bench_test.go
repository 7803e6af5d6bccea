package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown section", []string{"--only", "placement,nonsense"}, `unknown section "nonsense"`},
		{"bad concurrency", []string{"--concurrency", "1,x"}, "--concurrency"},
		{"concurrency out of range", []string{"--concurrency", "0"}, "concurrency 0 out of 1..1024"},
		{"bad interval", []string{"--e2e-intervals", "1s,soon"}, "--e2e-intervals"},
		{"interval out of range", []string{"--e2e-intervals", "10ms"}, "e2e interval 10ms out of 100ms..1m"},
		{"bad fast-commit mode", []string{"--e2e-fast-commit", "on,maybe"}, `--e2e-fast-commit: "maybe" is not on or off`},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runTool(t, nil, append([]string{"bench"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("bench %v = %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
			}
		})
	}
}

// A minimal placement run against a real orderd: the table has the ratio,
// and the JSON, Markdown and PNG are written. No figure is asserted.
func TestBenchPlacementRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB, Redis and orderd")
	}
	bin := filepath.Dir(binary(t, "orderd"))
	binary(t, "rmqdev") // the placement stack runs the broker as a process of its own
	out := t.TempDir()
	code, stdout, errOut := runTool(t, nil, "bench", "--bin", bin, "--orderd-config", "../../configs/orderd.yaml",
		"--only", "placement", "--concurrency", "2", "--duration", "1s", "--out", out)
	if code != 0 {
		t.Fatalf("bench = %d\n%s\n%s", code, stdout, errOut)
	}
	if !strings.Contains(stdout, "| 2 |") || !strings.Contains(stdout, "ratio") {
		t.Fatalf("table without the concurrency-2 row or the ratio:\n%s", stdout)
	}
	var rep struct {
		Placement []struct {
			Concurrency int     `json:"concurrency"`
			Ratio       float64 `json:"ratio"`
			Full        struct {
				Ops int `json:"ops"`
			} `json:"full_placement"`
		} `json:"placement"`
	}
	b, err := os.ReadFile(filepath.Join(out, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Placement) != 1 || rep.Placement[0].Full.Ops == 0 {
		t.Fatalf("bench.json = %s (%v); want one placement point with orders placed", b, err)
	}
	for _, f := range []string{"bench.md", "bench.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
