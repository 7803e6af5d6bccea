package main

import (
	"net"
	"os"
	"path/filepath"
)

// configPath is the default --config of a subcommand: the configuration
// `make run` wrote for the local stack ($RUN_DIR/<service>.yaml, RUN_DIR
// defaulting to .run as in scripts/devstack.sh), when it exists in the
// working directory, so that `bin/ordertool audit` after `make run` needs no
// environment; otherwise the shipped configs/<service>.yaml; outside the
// repository (no such file) none: the built-in defaults, which that file
// states (configs tests hold them equal), and the environment. The local
// stack's file holds no secret: it points *_file settings at files under
// $RUN_DIR/secrets (mode 0600). A production image has no $RUN_DIR and
// keeps reading configs/ and the TXORDER_* environment.
func (e *environment) configPath(service string) string {
	dir := lookupEnv(e.environ, "RUN_DIR")
	if dir == "" {
		dir = ".run"
	}
	for _, p := range []string{filepath.Join(dir, service+".yaml"), filepath.Join("configs", service+".yaml")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// orderdURL is the base URL orderd serves on, from its http.addr: a
// wildcard listen address is reached on 127.0.0.1.
func orderdURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8080"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
