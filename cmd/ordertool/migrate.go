package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/migrations"
)

func runMigrate(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "migrate [--config FILE] [--status]",
		"Applies every pending schema migration to the order database named by the\n"+
			"configuration (mysql.* settings, TXORDER_MYSQL__* variables), or lists them with --status.")
	configPath := fs.String("config", env.configPath("orderd"), "orderd configuration file (empty: defaults and environment only; default .run/orderd.yaml after make run)")
	status := fs.Bool("status", false, "list migrations and whether each is applied, change nothing")
	timeout := fs.Duration("timeout", time.Hour, "bound of the whole run (a migration that rebuilds a large table takes minutes; the service's mysql.timeout does not apply)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg, err := configs.LoadOrderd(*configPath, env.environ)
	if err != nil {
		return err
	}
	db, err := sql.Open("mysql", cfg.MySQL.DSN())
	if err != nil {
		return err
	}
	defer db.Close()
	if *status {
		list, err := migrations.List(ctx, db)
		if err != nil {
			return err
		}
		for _, m := range list {
			state := "pending"
			if m.Applied {
				state = "applied"
			}
			fmt.Fprintf(env.stdout, "%05d  %-8s %s\n", m.Version, state, m.Name)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	applied, err := migrations.UpDSN(ctx, cfg.MySQL.DSN(), *timeout)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(env.stdout, "schema is up to date")
		return nil
	}
	fmt.Fprintf(env.stdout, "applied migrations %v\n", applied)
	return nil
}
