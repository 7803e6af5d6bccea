package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/order"
)

func runSpill(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "spill list [--json] | spill replay <order-id>... | spill replay --all",
		"Shows and replays the spill queue: orders accepted (202 QUEUED) while RocketMQ was\n"+
			"unreachable. 'list' prints the dead entries (the drainer gave up after spill.max_attempts)\n"+
			"and how many are pending; 'replay' puts dead entries back in the queue for orderd's\n"+
			"drainer. Reads Redis as configured for orderd (redis.* settings).")
	configPath := fs.String("config", env.configPath("orderd"), "orderd configuration file (empty: defaults and environment only; default .run/orderd.yaml after make run)")
	asJSON := fs.Bool("json", false, "list: print JSON")
	all := fs.Bool("all", false, "replay: every dead entry")
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(env.stderr, "ordertool spill: want 'list' or 'replay'")
		fs.Usage()
		return errUsage
	}
	cfg, err := configs.LoadOrderd(*configPath, env.environ)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr, Password: cfg.Redis.Password, DB: cfg.Redis.DB,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	defer rdb.Close()
	q, err := fallback.NewSpillQueue(rdb, fallback.CacheConfig{Prefix: cfg.Redis.KeyPrefix, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	if args[0] == "list" {
		if len(args) > 1 || *all {
			fs.Usage()
			return errUsage
		}
		return spillList(ctx, env, q, *asJSON)
	}
	ids := args[1:]
	if *all == (len(ids) > 0) {
		fmt.Fprintln(env.stderr, "ordertool spill replay: give order ids or --all, not both or neither")
		return errUsage
	}
	return spillReplay(ctx, env, q, ids, *all)
}

func spillList(ctx context.Context, env *environment, q *fallback.SpillQueue, asJSON bool) error {
	dead, err := q.Dead(ctx)
	if err != nil {
		return err
	}
	pending, _, err := q.Depth(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(map[string]any{"pending": pending, "dead": dead})
	}
	fmt.Fprintf(env.stdout, "pending: %d  dead: %d\n", pending, len(dead))
	if len(dead) == 0 {
		return nil
	}
	w := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ORDER ID\tATTEMPTS\tDIED AT\tLAST ERROR")
	for _, d := range dead {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", d.OrderID, d.Attempts, d.DiedAt.Format(time.RFC3339), d.LastError)
	}
	return w.Flush()
}

func spillReplay(ctx context.Context, env *environment, q *fallback.SpillQueue, args []string, all bool) error {
	var ids []uuid.UUID
	if all {
		dead, err := q.Dead(ctx)
		if err != nil {
			return err
		}
		for _, d := range dead {
			ids = append(ids, d.OrderID)
		}
	}
	for _, a := range args {
		id, err := uuid.Parse(a)
		if err != nil {
			fmt.Fprintf(env.stderr, "ordertool spill replay: %q is not an order id\n", a)
			return errUsage
		}
		ids = append(ids, id)
	}
	var missing int
	for _, id := range ids {
		err := q.Replay(ctx, id)
		switch {
		case errors.Is(err, order.ErrNotFound):
			fmt.Fprintf(env.stderr, "%s: not a dead entry\n", id)
			missing++
		case err != nil:
			return err
		default:
			fmt.Fprintf(env.stdout, "%s: back in the queue\n", id)
		}
	}
	fmt.Fprintf(env.stdout, "replayed %d of %d\n", len(ids)-missing, len(ids))
	if missing > 0 {
		return fmt.Errorf("%d of the given orders are not dead entries", missing)
	}
	return nil
}
