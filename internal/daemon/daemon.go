// Package daemon is what orderd and fulfillmentd share around their Main:
// the --config flag and the run-until-signal lifecycle.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
)

// ConfigFlag parses args for the one flag both daemons take, --config.
// about is the paragraph --help prints. It returns the path, or ok false
// with the exit code (0 after --help, 2 for a usage error).
func ConfigFlag(name, defaultPath, about string, args []string, stderr io.Writer) (path string, code int, ok bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [--config FILE]\n\n%s\n\nFlags:\n", name, about)
		fs.PrintDefaults()
	}
	p := fs.String("config", defaultPath, "path of the YAML configuration file (empty: defaults and environment only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	return *p, 0, true
}

// Service is a daemon's Main.
type Service interface {
	Open(ctx context.Context) error
	Addr() string
	Close() error
}

// Run opens svc, logs "<name> ready" with its address and readyAttrs (tests
// and scripts wait for that line), serves until SIGINT or SIGTERM, and
// closes it. It returns the process exit code.
func Run(name string, svc Service, logger *slog.Logger, readyAttrs ...any) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := svc.Open(ctx); err != nil {
		logger.Error("start failed", "error", err)
		_ = svc.Close()
		return 1
	}
	logger.Info(name+" ready", append([]any{"addr", svc.Addr()}, readyAttrs...)...)
	<-ctx.Done()
	logger.Info("shutting down")
	if err := svc.Close(); err != nil {
		logger.Error("shutdown", "error", err)
		return 1
	}
	return 0
}
