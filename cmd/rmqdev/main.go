// Command rmqdev runs an in-memory RocketMQ NameServer and broker
// (internal/rmqtest) for local development and chaos scripts. It keeps
// every message in memory and is not for production.
//
//	rmqdev [flags]                 NameServer and broker in one process
//	rmqdev namesrv --addr ...      only the NameServer
//	rmqdev broker --addr ... --namesrv ...
//	                               only the broker, registering with the
//	                               NameServer(s) over the wire
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/txorder/txorder/internal/rmqtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "rmqdev:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage error")

const warning = `rmqdev keeps every message, offset and transaction in memory only: a
restart loses them. It is for development and tests, NOT for production.`

// run parses args, starts the server, calls ready (if set) and serves
// until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(*rmqtest.Server)) error {
	mode := "all"
	if len(args) > 0 && (args[0] == "namesrv" || args[0] == "broker") {
		mode, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("rmqdev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts      rmqtest.Options
		logLevel  = slog.LevelInfo
		topics    = topicsFlag{}
		namesrvs  string
		frameSize int
	)
	switch mode {
	case "all":
		fs.StringVar(&opts.NameServerAddr, "namesrv-addr", "127.0.0.1:9876", "NameServer listen `address` (IPv4 literal and port; port 0 picks one)")
		fs.StringVar(&opts.BrokerAddr, "broker-addr", "127.0.0.1:10911", "broker listen `address`; advertised to clients in routes and message ids unless --advertise is set")
		fs.StringVar(&opts.BrokerAdvertiseAddr, "advertise", "", "`address` the broker gives clients instead of its listen address (a proxy in front of it), as a Java broker's brokerIP1")
	case "namesrv":
		fs.StringVar(&opts.NameServerAddr, "addr", "127.0.0.1:9876", "NameServer listen `address` (IPv4 literal and port)")
		opts.NoBroker = true
	case "broker":
		fs.StringVar(&opts.BrokerAddr, "addr", "127.0.0.1:10911", "broker listen `address`; advertised to clients in routes and message ids unless --advertise is set")
		fs.StringVar(&opts.BrokerAdvertiseAddr, "advertise", "", "`address` the broker gives clients instead of its listen address (a proxy in front of it), as a Java broker's brokerIP1")
		fs.StringVar(&namesrvs, "namesrv", "127.0.0.1:9876", "comma-separated NameServer `addresses` to register with (REGISTER_BROKER)")
		fs.DurationVar(&opts.RegisterInterval, "register-interval", 30*time.Second, "how often the broker registers with the NameServers, like a real broker")
		opts.NoNameServer = true
	}
	if mode != "namesrv" {
		fs.DurationVar(&opts.CheckInterval, "check-interval", 30*time.Second, "period of transaction check rounds (CHECK_TRANSACTION_STATE)")
		fs.DurationVar(&opts.TransactionTimeout, "check-timeout", 6*time.Second, "age a half message must reach before its first check (Java transactionTimeOut)")
		fs.IntVar(&opts.CheckMax, "check-max", 15, "checks per transaction before the half message is moved to TRANS_CHECK_MAX_TIME_TOPIC")
		fs.Float64Var(&opts.DelayScale, "delay-scale", 1.0, "multiplier for the delay-level table (1s 5s 10s 30s 1m ... 2h) used by delayed messages and consumer retries")
		fs.Var(topics, "topics", "topics to create at start, `name:queues,...` (queues default to 4); other topics are auto-created on first send")
		fs.StringVar(&opts.ClusterName, "cluster", "DefaultCluster", "cluster `name` the broker reports")
		fs.StringVar(&opts.BrokerName, "broker-name", "broker-a", "broker `name` the broker reports")
		fs.IntVar(&opts.MaxQueueMessages, "max-queue-messages", 100000, "messages kept per queue before the oldest are forgotten, bounding memory (0 keeps all)")
		fs.BoolVar(&opts.StrictConsumerOffset, "strict-consumer-offset", false, "answer QUERY_NOT_FOUND to new consumer groups (start at the end) instead of Java's offset 0")
	}
	fs.IntVar(&frameSize, "max-frame-size", 16<<20, "largest accepted frame in `bytes`; bigger frames close the connection")
	fs.TextVar(&logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		w := fs.Output()
		switch mode {
		case "all":
			fmt.Fprint(w, "Usage: rmqdev [flags]\n       rmqdev namesrv [flags]\n       rmqdev broker [flags]\n\n")
			fmt.Fprint(w, "rmqdev runs an in-memory RocketMQ NameServer and one master broker that\nrocketmq-client-go uses as if they were Apache RocketMQ 4.9: sends, batches,\ndelays, transactions with check-backs, push consumers with retries and DLQ,\norderly consumers. The subcommands run one half each, so that it can be killed\nalone; see 'rmqdev namesrv --help' and 'rmqdev broker --help'.\n\n")
		case "namesrv":
			fmt.Fprint(w, "Usage: rmqdev namesrv [flags]\n\nRuns only the NameServer. It starts empty and learns routes from brokers'\nREGISTER_BROKER requests; it forgets a broker whose connection closes.\n\n")
		case "broker":
			fmt.Fprint(w, "Usage: rmqdev broker [flags]\n\nRuns only the broker. It registers with the NameServers every\n--register-interval and at once when a topic is created.\n\n")
		}
		fmt.Fprint(w, warning+"\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(w, "\nIt stops gracefully on SIGINT or SIGTERM.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rmqdev: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	if namesrvs != "" {
		for _, a := range strings.Split(namesrvs, ",") {
			if a = strings.TrimSpace(a); a != "" {
				opts.RegisterTo = append(opts.RegisterTo, a)
			}
		}
	}
	opts.Topics = topics
	opts.MaxFrameSize = frameSize
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	opts.Logger = log

	s, err := rmqtest.NewServer(opts)
	if err != nil {
		return err
	}
	log.Info("rmqdev ready: messages are kept in memory only, not for production",
		"mode", mode, "namesrv", s.NameServerAddr(), "broker", s.BrokerAddr())
	if ready != nil {
		ready(s)
	}
	<-ctx.Done()
	log.Info("rmqdev shutting down")
	s.Close()
	log.Info("rmqdev stopped")
	return nil
}

// topicsFlag parses "name:queues,name,..." into rmqtest.Options.Topics.
type topicsFlag map[string]int

func (t topicsFlag) String() string {
	parts := make([]string, 0, len(t))
	for name, n := range t {
		parts = append(parts, name+":"+strconv.Itoa(n))
	}
	return strings.Join(parts, ",")
}

func (t topicsFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, num, found := strings.Cut(item, ":")
		n := 4
		if found {
			var err error
			if n, err = strconv.Atoi(num); err != nil || n <= 0 || n > 1024 {
				return fmt.Errorf("bad queue count in %q", item)
			}
		}
		if name == "" || len(name) > 127 {
			return fmt.Errorf("bad topic name in %q", item)
		}
		t[name] = n
	}
	return nil
}
