package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/internal/audit"
)

func runAudit(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "audit [flags]",
		"Checks the promise after a run: every PAID order applied exactly once by the\n"+
			"fulfillment group, nothing applied that was not paid, and (with --accepted) every\n"+
			"order a client was told was accepted either stored or still held in Redis (order\n"+
			"cache, spill queue, dead spill entries). Reads the order database and Redis (orderd\n"+
			"configuration) and the fulfillment database (fulfillmentd configuration,\n"+
			"TXORDER_FULFILLMENT__* variables); they may be the same database.\n"+
			"Exit status 0 only when lost = duplicated = phantom = absent = 0.")
	orderConfig := fs.String("config", env.configPath("orderd"), "orderd configuration file: order database and Redis (empty: defaults and environment only; default .run/orderd.yaml after make run)")
	fulfillmentConfig := fs.String("fulfillment-config", env.configPath("fulfillmentd"), "fulfillmentd configuration file: fulfillment database and group (default .run/fulfillmentd.yaml after make run)")
	orderDSN := fs.String("order-dsn", "", "order database as a go-sql-driver DSN (overrides the orderd configuration)")
	fulfillmentDSN := fs.String("fulfillment-dsn", "", "fulfillment database as a go-sql-driver DSN (overrides the fulfillmentd configuration)")
	group := fs.String("group", "", "consumer group to audit (default: rocketmq.group of the fulfillmentd configuration)")
	settle := fs.Duration("settle", 0, "wait up to this long for paid orders to be applied before calling them lost")
	acceptedFile := fs.String("accepted", "", "`file` of order ids a client got 201/202 for, one per line as ordertool load writes them: report those found nowhere")
	noRedis := fs.Bool("no-redis", false, "do not read Redis (orders held in the cache or the spill queue then count as absent)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if *settle < 0 {
		fmt.Fprintln(env.stderr, "--settle must not be negative")
		return errUsage
	}
	ocfg, err := configs.LoadOrderd(*orderConfig, configs.WithoutFulfillment(env.environ))
	if err != nil {
		return err
	}
	fcfg, err := configs.LoadFulfillmentd(*fulfillmentConfig, env.environ)
	if err != nil {
		return err
	}
	odb, err := openDB(*orderDSN, ocfg.MySQL)
	if err != nil {
		return err
	}
	defer odb.Close()
	fdb, err := openDB(*fulfillmentDSN, fcfg.MySQL)
	if err != nil {
		return err
	}
	defer fdb.Close()

	cfg := audit.Config{Group: *group, Settle: *settle}
	if cfg.Group == "" {
		cfg.Group = fcfg.RocketMQ.Group
	}
	if *acceptedFile != "" {
		if cfg.Accepted, err = readIDs(*acceptedFile); err != nil {
			return err
		}
	}
	if !*noRedis {
		rdb := redis.NewClient(&redis.Options{Addr: ocfg.Redis.Addr, Password: ocfg.Redis.Password, DB: ocfg.Redis.DB,
			DialTimeout: ocfg.Redis.Timeout, ReadTimeout: ocfg.Redis.Timeout, WriteTimeout: ocfg.Redis.Timeout})
		defer rdb.Close()
		cache, err := fallback.NewOrderCache(rdb, fallback.CacheConfig{Prefix: ocfg.Redis.KeyPrefix, Timeout: ocfg.Redis.Timeout})
		if err != nil {
			return err
		}
		spill, err := fallback.NewSpillQueue(rdb, fallback.CacheConfig{Prefix: ocfg.Redis.KeyPrefix, Timeout: ocfg.Redis.Timeout})
		if err != nil {
			return err
		}
		cfg.Holders = append(cfg.Holders,
			// Accepted while MySQL was down: waiting for a check-back or
			// the sweeper to store them.
			audit.Holder{Name: "cached", IDs: func(ctx context.Context) ([]uuid.UUID, error) {
				n, err := cache.Size(ctx)
				if err != nil || n == 0 {
					return nil, redisHint(err)
				}
				ids, err := cache.IDs(ctx, n)
				return ids, redisHint(err)
			}},
			// Accepted while RocketMQ was down: waiting for the drainer.
			audit.Holder{Name: "queued", IDs: func(ctx context.Context) ([]uuid.UUID, error) {
				n, _, err := spill.Depth(ctx)
				if err != nil || n == 0 {
					return nil, redisHint(err)
				}
				ids, err := spill.Pending(ctx, n)
				return ids, redisHint(err)
			}},
			// Given up on by the drainer, kept for `ordertool spill replay`.
			audit.Holder{Name: "spill dead", IDs: func(ctx context.Context) ([]uuid.UUID, error) {
				dead, err := spill.Dead(ctx)
				ids := make([]uuid.UUID, 0, len(dead))
				for _, d := range dead {
					ids = append(ids, d.OrderID)
				}
				return ids, redisHint(err)
			}},
		)
	}
	r, err := audit.Run(ctx, odb, fdb, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		err = r.WriteJSON(env.stdout)
	} else {
		err = r.WriteTable(env.stdout)
	}
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("audit failed: %s", r.Failures())
	}
	return nil
}

func redisHint(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (audit without the cache: --no-redis)", err)
}

// openDB opens dsn, or the database of cfg when dsn is empty.
func openDB(dsn string, cfg configs.MySQL) (*sql.DB, error) {
	if dsn == "" {
		dsn = cfg.DSN()
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return db, nil
}

// readIDs reads order ids, one per line; blank lines and lines starting
// with # are skipped.
func readIDs(path string) ([]uuid.UUID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ids := []uuid.UUID{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not an order id", path, line, s)
		}
		ids = append(ids, id)
	}
	return ids, sc.Err()
}
