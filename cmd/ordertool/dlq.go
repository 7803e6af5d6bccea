package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/listener"
)

const dlqSynopsis = `Dead letters of the fulfillment service: ORDER_PAID messages the broker gave
up on (moved to %DLQ%fulfillment after rocketmq.max_reconsume_times failed
deliveries) and malformed ones fulfillmentd parked at once.

  ordertool dlq list [--json] [--pending]      show them
  ordertool dlq replay <id>... | --all         re-apply them (idempotent) and mark them replayed

The database comes from the fulfillmentd configuration (mysql.*,
TXORDER_FULFILLMENT__MYSQL__* variables).`

func runDLQ(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		// io.WriteString: the synopsis names %DLQ%…, which is no format.
		_, _ = io.WriteString(env.stderr, "Usage: ordertool dlq list|replay [flags]\n\n"+dlqSynopsis+"\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	switch args[0] {
	case "list":
		return runDLQList(ctx, env, args[1:])
	case "replay":
		return runDLQReplay(ctx, env, args[1:])
	}
	fmt.Fprintf(env.stderr, "ordertool dlq: unknown subcommand %q (list or replay)\n", args[0])
	return errUsage
}

// openFulfillmentDB opens the fulfillment database named by the
// fulfillmentd configuration at path.
func openFulfillmentDB(env *environment, path string) (configs.Fulfillmentd, *sql.DB, error) {
	cfg, err := configs.LoadFulfillmentd(path, env.environ)
	if err != nil {
		return cfg, nil, err
	}
	db, err := sql.Open("mysql", cfg.MySQL.DSN())
	if err != nil {
		return cfg, nil, err
	}
	return cfg, db, nil
}

func runDLQList(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "dlq list [--json] [--pending] [--config FILE]", dlqSynopsis)
	configPath := fs.String("config", env.configPath("fulfillmentd"), "fulfillmentd configuration file (empty: defaults and environment only; default .run/fulfillmentd.yaml after make run)")
	asJSON := fs.Bool("json", false, "print JSON (one array) instead of a table")
	pending := fs.Bool("pending", false, "only those not replayed yet")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg, db, err := openFulfillmentDB(env, *configPath)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := listener.NewDeadLetterStore(db, cfg.MySQL.Timeout)
	if err != nil {
		return err
	}
	list, err := store.List(ctx, cfg.RocketMQ.Group, *pending)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeDeadLettersJSON(env.stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(env.stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKEY\tMSG ID\tDELIVERIES\tFIRST SEEN\tLAST SEEN\tREPLAYED\tREASON")
	for _, d := range list {
		replayed := "-"
		if d.ReplayedAt != nil {
			replayed = d.ReplayedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.ID, d.Key, d.OriginalMsgID, d.ReconsumeTimes,
			d.FirstSeenAt.Format(time.RFC3339), d.LastSeenAt.Format(time.RFC3339), replayed, oneLine(d.Reason, 120))
	}
	return tw.Flush()
}

type deadLetterJSON struct {
	ID             int64      `json:"id"`
	Group          string     `json:"group"`
	OriginalMsgID  string     `json:"original_msg_id"`
	Key            string     `json:"key"`
	Body           *string    `json:"body,omitempty"`
	BodyBase64     []byte     `json:"body_base64,omitempty"`
	ReconsumeTimes int        `json:"reconsume_times"`
	Reason         string     `json:"reason"`
	FirstSeenAt    time.Time  `json:"first_seen_at"`
	LastSeenAt     time.Time  `json:"last_seen_at"`
	ReplayedAt     *time.Time `json:"replayed_at"`
}

func writeDeadLettersJSON(w io.Writer, list []listener.DeadLetter) error {
	out := make([]deadLetterJSON, 0, len(list))
	for _, d := range list {
		j := deadLetterJSON{ID: d.ID, Group: d.Group, OriginalMsgID: d.OriginalMsgID, Key: d.Key,
			ReconsumeTimes: d.ReconsumeTimes, Reason: d.Reason, FirstSeenAt: d.FirstSeenAt, LastSeenAt: d.LastSeenAt,
			ReplayedAt: d.ReplayedAt}
		// A body that is text is shown as text; anything else as base64.
		if utf8.Valid(d.Body) {
			s := string(d.Body)
			j.Body = &s
		} else {
			j.BodyBase64 = d.Body
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// oneLine flattens s and cuts it to n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > n {
		return string([]rune(s)[:n-1]) + "…"
	}
	return s
}

func runDLQReplay(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "dlq replay <id>... | --all [--config FILE]",
		"Re-applies dead letters through fulfillmentd's handler (the same transaction and\n"+
			"idempotency guard: an order already applied is not applied again) and marks them\n"+
			"replayed. Remove the cause of the failures first. Exits 1 if any was not replayed.")
	configPath := fs.String("config", env.configPath("fulfillmentd"), "fulfillmentd configuration file (empty: defaults and environment only; default .run/fulfillmentd.yaml after make run)")
	all := fs.Bool("all", false, "replay every dead letter not replayed yet")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *all == (len(rest) > 0) {
		fmt.Fprintln(env.stderr, "ordertool dlq replay: give dead letter ids or --all, not both or neither")
		fs.Usage()
		return errUsage
	}
	ids := make([]int64, 0, len(rest))
	for _, a := range rest {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			fmt.Fprintf(env.stderr, "ordertool dlq replay: %q is not a dead letter id (see ordertool dlq list)\n", a)
			return errUsage
		}
		ids = append(ids, id)
	}
	cfg, db, err := openFulfillmentDB(env, *configPath)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := listener.NewFulfillmentStore(db, cfg.Handler.Timeout)
	if err != nil {
		return err
	}
	dead, err := listener.NewDeadLetterStore(db, cfg.Handler.Timeout)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := listener.NewFulfillment(store, dead, nil, logger, listener.FulfillmentConfig{
		Group: cfg.RocketMQ.Group, Timeout: cfg.Handler.Timeout,
	})
	if err != nil {
		return err
	}
	if *all {
		list, err := dead.List(ctx, cfg.RocketMQ.Group, true)
		if err != nil {
			return err
		}
		for _, d := range list {
			ids = append(ids, d.ID)
		}
		if len(ids) == 0 {
			fmt.Fprintln(env.stdout, "no dead letters to replay")
			return nil
		}
	}
	var failed int
	for _, id := range ids {
		out, err := h.Replay(ctx, id)
		if err != nil {
			failed++
			fmt.Fprintf(env.stdout, "dead letter %d: not replayed: %v\n", id, err)
			continue
		}
		what := "applied"
		if out == listener.ReplayAlreadyApplied {
			what = "already applied, nothing to do"
		}
		fmt.Fprintf(env.stdout, "dead letter %d: %s\n", id, what)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d dead letters not replayed", failed, len(ids))
	}
	return nil
}
