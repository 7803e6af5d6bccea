package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/order"
)

// BenchmarkConsolePages measures each console page's server time with
// 100,000 orders in MySQL (a third each pending, paid and closed), 10,000
// pending and 10,000 dead spill entries and 1,000 refunds, through HTTP on
// 127.0.0.1. Run it with
//
//	go test -run '^$' -bench ConsolePages -benchtime 20x ./cmd/orderd
//
// The figures are in docs/console.md; nothing asserts a time.
func BenchmarkConsolePages(b *testing.B) {
	// Sends fail, so the seeded pending entries stay pending (the drainer
	// retries them without end).
	s := newStack(b, stackOptions{env: append(consoleEnv[:len(consoleEnv):len(consoleEnv)], "TXORDER_SPILL__MAX_ATTEMPTS=1000000")})
	s.mq.FailSends(1)
	m := s.orderd()
	seedOrders(b, s.db, 100_000)
	seedSpill(b, s, 10_000)
	cookie, _ := consoleLogin(b, consoleClient(b), "http://"+m.Addr()+"/console", consoleAdminKey)

	var deepOrders, deepSpill, someOrder string
	if err := s.db.QueryRow(`SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET 50000`).Scan(&someOrder); err != nil {
		b.Fatal(err)
	}
	var deadline time.Time
	if err := s.db.QueryRow(`SELECT payment_deadline, id FROM orders WHERE status = 'PAID' ORDER BY payment_deadline DESC, id DESC LIMIT 1 OFFSET 20000`).
		Scan(&deadline, &deepOrders); err != nil {
		b.Fatal(err)
	}
	deepOrders = fmt.Sprintf("%d_%s", deadline.UnixMicro(), deepOrders)
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	msgs, err := rdb.XRangeN(context.Background(), s.cfg.Redis.KeyPrefix+"spill:stream", "-", "+", 9000).Result()
	if err != nil || len(msgs) == 0 {
		b.Fatalf("stream: %v", err)
	}
	deepSpill = msgs[len(msgs)-1].ID

	pages := []string{
		"/overview", "/overview.json",
		"/orders", "/orders?status=PAID", "/orders?status=PAID&after=" + deepOrders, "/orders?after=" + someOrder,
		"/orders/" + someOrder,
		"/spill?state=pending", "/spill?state=pending&after=" + deepSpill, "/spill?state=dead",
		"/refunds", "/dead-letters?pending=1",
	}
	for _, p := range pages {
		name := strings.NewReplacer("/", "_", "?", "_", "&", "_", "=", "-").Replace(strings.TrimPrefix(p, "/"))
		if len(name) > 40 {
			name = name[:40]
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, "http://"+m.Addr()+"/console"+p, nil)
				req.AddCookie(&http.Cookie{Name: "txo_console", Value: cookie})
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("%s = %d", p, res.StatusCode)
				}
			}
		})
	}
}

func seedOrders(b *testing.B, db *sql.DB, n int) {
	b.Helper()
	start := time.Now().Add(-48 * time.Hour).UTC()
	statuses := []order.Status{order.StatusPendingPayment, order.StatusPaid, order.StatusClosed}
	const batch = 1000
	for done := 0; done < n; done += batch {
		var q, items strings.Builder
		q.WriteString(`INSERT INTO orders (id, customer_id, currency, total_amount, status, payment_deadline, created_at, updated_at, paid_at, closed_at) VALUES `)
		items.WriteString(`INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price) VALUES `)
		var args, itemArgs []any
		for i := range batch {
			k := done + i
			at := start.Add(time.Duration(k) * time.Second)
			id, _ := uuid.NewV7()
			st := statuses[k%3]
			var paid, closed any
			if st == order.StatusPaid {
				paid = at.Add(time.Minute)
			}
			if st == order.StatusClosed {
				closed = at.Add(5 * time.Minute)
			}
			if i > 0 {
				q.WriteString(",")
				items.WriteString(",")
			}
			q.WriteString("(?,?,?,?,?,?,?,?,?,?)")
			items.WriteString("(?,1,'S','Widget',1,100)")
			args = append(args, id.String(), fmt.Sprintf("c-%d", k%977), "EUR", 100, string(st), at.Add(5*time.Minute), at, at, paid, closed)
			itemArgs = append(itemArgs, id.String())
			if k%100 == 1 && st == order.StatusPaid {
				// A refund for every hundredth order.
				defer func() {
					_, _ = db.Exec(`INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, received_at) VALUES (?,?,100,'EUR','REFUND_REQUIRED',?)`,
						"bench-"+id.String(), id.String(), at)
				}()
			}
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec(items.String(), itemArgs...); err != nil {
			b.Fatal(err)
		}
	}
}

func seedSpill(b *testing.B, s *stack, n int) {
	b.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: s.cfg.Redis.Addr, DB: s.cfg.Redis.DB})
	defer rdb.Close()
	prefix := s.cfg.Redis.KeyPrefix
	for done := 0; done < 2*n; done += 500 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 500 {
				id, _ := uuid.NewV7()
				o := order.Order{ID: id, CustomerID: "c-spill", Currency: "EUR", Total: 100, Status: order.StatusPendingPayment,
					Items: []order.Item{{SKU: "S", Name: "Widget", Quantity: 1, UnitPrice: 100}}, CreatedAt: time.Now().UTC()}
				body, _ := json.Marshal(o)
				p.Set(ctx, prefix+"spill:order:"+id.String(), body, 0)
				if done+i < n {
					p.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "spill:stream", Values: map[string]any{"order_id": id.String()}})
					p.HSet(ctx, prefix+"spill:attempts", id.String(), 3)
					continue
				}
				d, _ := json.Marshal(fallback.DeadEntry{OrderID: id, Attempts: 240, LastError: "half message not sent", DiedAt: time.Now().UTC()})
				p.HSet(ctx, prefix+"spill:dead", id.String(), d)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
