package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/txorder/txorder/internal/testenv"
)

// binary builds a command of this module once per test run.
func binary(t *testing.T, pkg string) string { return testenv.Build(t, pkg) }

// runOrdertool runs ordertool with env added to the environment and
// returns its output; a non-zero exit fails the test.
func runOrdertool(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary(t, "github.com/txorder/txorder/cmd/ordertool"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("ordertool %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}
