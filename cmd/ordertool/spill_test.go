package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
)

// failingPlacer stands in for a RocketMQ that never takes a send, so the
// drainer buries entries; it is our own Placer interface, not the client.
type failingPlacer struct{}

func (failingPlacer) Place(context.Context, *order.Order) (order.Outcome, error) {
	return "", fmt.Errorf("%w: %w", order.ErrRefused, order.ErrNotSent)
}

type noOrders struct{}

func (noOrders) Get(context.Context, uuid.UUID) (*order.Order, error) { return nil, order.ErrNotFound }

func TestSpillListAndReplay(t *testing.T) {
	rd := testenv.Redis(t)
	env := []string{"TXORDER_REDIS__ADDR=" + rd.Addr()}
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr()})
	defer rdb.Close()
	q, err := fallback.NewSpillQueue(rdb, fallback.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		o := &order.Order{ID: uuid.Must(uuid.NewV7()), CustomerID: "c", Currency: "EUR", Total: 1,
			Items: []order.Item{{SKU: "s", Name: "n", Quantity: 1, UnitPrice: 1}}, Status: order.StatusPendingPayment,
			ClientID: "demo", IdempotencyKey: fmt.Sprintf("k%d", i)}
		if err := q.Append(ctx, o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID.String())
	}
	d, err := fallback.NewDrainer(q, failingPlacer{}, noOrders{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)),
		fallback.DrainerConfig{MaxAttempts: 1, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, dead, _ := q.Depth(ctx); dead == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entries never died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.Close()

	code, out, errOut := runTool(t, env, "spill", "list", "--config", "")
	if code != 0 || !strings.Contains(out, "pending: 0  dead: 3") || !strings.Contains(out, ids[0]) ||
		!strings.Contains(out, "half message not sent") {
		t.Fatalf("spill list = %d %q %q", code, out, errOut)
	}
	if code, out, _ := runTool(t, env, "spill", "list", "--json", "--config", ""); code != 0 || !strings.Contains(out, `"dead":[{"order_id"`) {
		t.Fatalf("spill list --json = %d %q", code, out)
	}
	if code, _, errOut := runTool(t, env, "spill", "replay", uuid.NewString(), "--config", ""); code != 1 || !strings.Contains(errOut, "not a dead entry") {
		t.Fatalf("replay of a live id = %d %q, want 1", code, errOut)
	}
	if code, out, _ := runTool(t, env, "spill", "replay", ids[0], "--config", ""); code != 0 || !strings.Contains(out, "replayed 1 of 1") {
		t.Fatalf("replay one = %d %q", code, out)
	}
	if code, out, _ := runTool(t, env, "spill", "replay", "--all", "--config", ""); code != 0 || !strings.Contains(out, "replayed 2 of 2") {
		t.Fatalf("replay --all = %d %q", code, out)
	}
	if pending, dead, err := q.Depth(ctx); err != nil || pending != 3 || dead != 0 {
		t.Fatalf("after replay: %d pending, %d dead (%v); want 3 and 0", pending, dead, err)
	}
	for _, tc := range [][]string{{"spill"}, {"spill", "bogus"}, {"spill", "replay"}, {"spill", "replay", "--all", ids[0]}} {
		if code, _, _ := runTool(t, env, append(tc, "--config", "")...); code != 2 {
			t.Errorf("ordertool %v = %d, want 2", tc, code)
		}
	}
	// Redis down: exit 1 with the cause, not a hang.
	if err := rd.Kill(); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runTool(t, env, "spill", "list", "--config", "")
	if code != 1 || !strings.Contains(errOut, "redis unavailable") {
		t.Fatalf("spill list with Redis down = %d %q", code, errOut)
	}
}
