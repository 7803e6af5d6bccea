// Command ordertool is the txorder operator CLI. Each subcommand has its own
// flags and --help. Exit status: 0 success, 1 failure, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

// environment is what a subcommand may touch; tests swap the streams.
type environment struct {
	stdout, stderr io.Writer
	environ        []string
}

// errUsage marks a usage error (exit 2); the flag set already printed why.
var errUsage = errors.New("usage")

var commands = map[string]command{
	"cluster": {summary: "print the RocketMQ cluster's brokers and which node is the master, from a NameServer", run: runCluster},
	"migrate": {summary: "apply (or list) the MySQL schema migrations", run: runMigrate},
	"pay":     {summary: "sign and send a payment notification for an order, as the provider would", run: runPay},
	"load":    {summary: "place (and pay) orders at a rate or concurrency and report latencies", run: runLoad},
	"audit":   {summary: "check the promise: every paid order applied once downstream, nothing lost or invented", run: runAudit},
	"dlq":     {summary: "list or replay the fulfillment service's dead letters", run: runDLQ},
	"bench":   {summary: "measure placement, check-backs, degraded modes, recovery and e2e latency against raw MySQL", run: runBench},
	"report":  {summary: "draw a chaos run's timeline (PNG and HTML) from its load summary, metrics and outages", run: runReport},
	"spill":   {summary: "list or replay orders in the spill queue (accepted while RocketMQ was down)", run: runSpill},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, &environment{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ()}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, env *environment, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "ordertool: unknown command %q\n\n", args[0])
		usage(env.stderr)
		return 2
	}
	err := cmd.run(ctx, env, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(env.stderr, "ordertool %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: ordertool <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'ordertool <command> --help' for the flags of a command.")
}

// newFlagSet returns a flag set whose errors and help go to env.stderr.
func newFlagSet(env *environment, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("ordertool "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ordertool %s\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and maps flag errors to errUsage / flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	return nil
}
