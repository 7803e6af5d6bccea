// Package migrations holds txorder's versioned MySQL schema, embedded in the
// binary and applied with pressly/goose.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
)

//go:embed sql/*.sql
var files embed.FS

func provider(db *sql.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectMySQL, db, sub)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration and returns the versions applied.
// goose has no session lock for MySQL, so run it from one process at a
// time (orderd at start-up with a single replica, or `ordertool migrate`
// before a rolling deploy). Two concurrent runs cannot corrupt the schema:
// the loser's CREATE TABLE fails and it exits with that error.
func Up(ctx context.Context, db *sql.DB) ([]int64, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply migrations: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// UpDSN is Up over a pool of its own, opened from dsn with the driver's
// read and write timeouts set to bound; ctx should end by then too. A
// service's pool cuts off any answer slower than mysql.timeout + 1 s (a
// server that accepts and never answers must not hold a request), but a
// migration that rebuilds a table (00002) is one statement that runs far
// longer on a large one: over that pool the driver dropped the connection
// mid-statement ("invalid connection") and the start failed.
func UpDSN(ctx context.Context, dsn string, bound time.Duration) ([]int64, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ReadTimeout, cfg.WriteTimeout = bound, bound
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return Up(ctx, db)
}

// Status describes one migration and whether it is applied.
type Status struct {
	Version int64
	Name    string
	Applied bool
}

// List returns every known migration with its state.
func List(ctx context.Context, db *sql.DB) ([]Status, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]Status, 0, len(st))
	for _, s := range st {
		out = append(out, Status{Version: s.Source.Version, Name: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}
