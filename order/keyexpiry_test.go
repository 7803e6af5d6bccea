package order_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/txorder/txorder/order"
)

// TestKeyExpiry (issue 12, finding 5): idempotency keys older than the TTL
// are deleted in batches, newer ones kept, orders never; once a key is
// gone, the key places a new order, as it would once Redis forgot it.
func TestKeyExpiry(t *testing.T) {
	db := openDB(t, sharedMySQL.NewDatabase(t))
	now := time.Now().UTC().Truncate(time.Microsecond)
	clock := now
	svc, err := func() (*order.Service, error) {
		store, err := order.NewStore(db, order.StoreConfig{Timeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		return order.NewService(store, order.DirectPlacer{Store: store}, order.ServiceConfig{
			PaymentWindow: time.Minute, Now: func() time.Time { return clock }})
	}()
	if err != nil {
		t.Fatal(err)
	}
	store, err := order.NewStore(db, order.StoreConfig{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 7 keys placed 25 h ago, 3 placed 23 h ago.
	var old, fresh []*order.Order
	for i := range 10 {
		clock = now.Add(-25 * time.Hour)
		if i >= 7 {
			clock = now.Add(-23 * time.Hour)
		}
		res, err := svc.Place(ctx, request("key-"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		if i < 7 {
			old = append(old, res.Order)
		} else {
			fresh = append(fresh, res.Order)
		}
	}
	x, err := order.NewKeyExpirer(store, slog.New(slog.NewTextHandler(io.Discard, nil)), order.KeyExpiryConfig{
		TTL: 24 * time.Hour, Batch: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var rounds []int
	for {
		n, err := x.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, n)
		if n < 3 {
			break
		}
	}
	if len(rounds) != 3 || rounds[0] != 3 || rounds[1] != 3 || rounds[2] != 1 || x.Expired() != 7 {
		t.Fatalf("rounds deleted %v (total %d), want 3, 3, 1", rounds, x.Expired())
	}
	var keys, orders int
	if err := db.QueryRow(`SELECT COUNT(*) FROM idempotency_keys`).Scan(&keys); err != nil || keys != 3 {
		t.Fatalf("keys left = %d (%v), want the 3 recent ones", keys, err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&orders); err != nil || orders != 10 {
		t.Fatalf("orders = %d (%v), want all 10 kept", orders, err)
	}
	for _, o := range old {
		got, err := store.Get(ctx, o.ID)
		if err != nil || got.ClientID != "demo" {
			t.Fatalf("order %s after its key expired = %+v, %v; want it with its owner", o.ID, got, err)
		}
	}
	clock = now
	// A recent key still replays; an expired one places a new order.
	if res, err := svc.Place(ctx, request("key-h")); err != nil || !res.Replayed || res.Order.ID != fresh[0].ID {
		t.Fatalf("recent key = %+v, %v; want the replay of %s", res, err, fresh[0].ID)
	}
	if res, err := svc.Place(ctx, request("key-a")); err != nil || res.Replayed || res.Order.ID == old[0].ID {
		t.Fatalf("expired key = %+v, %v; want a new order", res, err)
	}
}

// TestKeyExpiryReplicas: expirers on several replicas at once delete every
// expired key exactly once between them, and a key another transaction
// holds is skipped, not waited for.
func TestKeyExpiryReplicas(t *testing.T) {
	db := openDB(t, sharedMySQL.NewDatabase(t))
	ctx := context.Background()
	created := time.Now().UTC().Add(-48 * time.Hour)
	const n = 300
	for i := range n {
		o := pendingOrder(t, time.Now().Add(time.Hour))
		o.CreatedAt, o.ClientID, o.IdempotencyKey, o.RequestHash = created.Add(time.Duration(i)*time.Millisecond), "demo", "k-"+o.ID.String(), "h"
		store, _ := order.NewStore(db, order.StoreConfig{})
		if err := store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the oldest key's row by its primary key, as a placement
	// inserting the same key would.
	var held, heldKey string
	if err := db.QueryRow(`SELECT order_id, idem_key FROM idempotency_keys ORDER BY created_at LIMIT 1`).Scan(&held, &heldKey); err != nil {
		t.Fatal(err)
	}
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback() }()
	if _, err := holder.ExecContext(ctx, `SELECT 1 FROM idempotency_keys WHERE client_id = 'demo' AND idem_key = ? FOR UPDATE`, heldKey); err != nil {
		t.Fatal(err)
	}
	const replicas = 4
	totals := make([]int, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			store, err := order.NewStore(db, order.StoreConfig{})
			if err != nil {
				errs[r] = err
				return
			}
			for {
				// A short deadline: waiting on the held row would fail it.
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				k, err := store.ExpireIdempotencyKeys(rctx, time.Now().Add(-24*time.Hour), 20)
				cancel()
				if err != nil {
					errs[r] = err
					return
				}
				totals[r] += k
				if k == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	sum := 0
	for r := range replicas {
		if errs[r] != nil {
			t.Fatalf("replica %d: %v", r, errs[r])
		}
		sum += totals[r]
	}
	if sum != n-1 {
		t.Fatalf("replicas deleted %v = %d keys, want %d (all but the held one)", totals, sum, n-1)
	}
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	var left string
	if err := db.QueryRow(`SELECT order_id FROM idempotency_keys`).Scan(&left); err != nil || left != held {
		t.Fatalf("key left = %q (%v), want the held %s", left, err, held)
	}
}
