package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConfigPath: after `make run` the local stack's configuration is the
// default; without it the shipped file; outside the repository none (the
// defaults and the environment). RUN_DIR moves the local stack's.
func TestConfigPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	env := &environment{}
	if got := env.configPath("orderd"); got != "" {
		t.Errorf("outside the repository: %q, want none", got)
	}
	write := func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("configs/orderd.yaml")
	if got := env.configPath("orderd"); got != "configs/orderd.yaml" {
		t.Errorf("repository without .run: %q", got)
	}
	write(".run/orderd.yaml")
	if got := env.configPath("orderd"); got != ".run/orderd.yaml" {
		t.Errorf("after make run: %q", got)
	}
	if got := env.configPath("fulfillmentd"); got != "" {
		t.Errorf("fulfillmentd without its files: %q", got)
	}
	write("elsewhere/orderd.yaml")
	if got := (&environment{environ: []string{"RUN_DIR=elsewhere"}}).configPath("orderd"); got != "elsewhere/orderd.yaml" {
		t.Errorf("RUN_DIR=elsewhere: %q", got)
	}
}

func TestOrderdURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:13080": "http://127.0.0.1:13080",
		"0.0.0.0:8080":    "http://127.0.0.1:8080",
		":8080":           "http://127.0.0.1:8080",
		"[::]:8080":       "http://127.0.0.1:8080",
		"orderd:8080":     "http://orderd:8080",
		"nonsense":        "http://127.0.0.1:8080",
	} {
		if got := orderdURL(addr); got != want {
			t.Errorf("orderdURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
