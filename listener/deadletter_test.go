package listener

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"

	"github.com/txorder/txorder/order"
)

// TestDeadLetterRecorder: a message from %DLQ%fulfillment is stored once;
// seeing it again only moves last_seen_at; the reason carries the last
// error the handler saw in this process.
func TestDeadLetterRecorder(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	rec, err := NewDeadLetterRecorder(f.dead, DefaultFulfillmentGroup, f.h, f.metrics, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev := paidEvent()
	m := paidMessage(t, ev)
	f.setFail(func(order.PaidEvent, int32) error { return errors.New("carrier unreachable") })
	if res := consume(t, f.h, m); res != consumer.ConsumeRetryLater {
		t.Fatalf("failing handler = %v", res)
	}
	m.Topic = DLQTopic(DefaultFulfillmentGroup)
	m.ReconsumeTimes = 4
	if res, _ := rec.Consume(context.Background(), m); res != consumer.ConsumeSuccess {
		t.Fatalf("recorder = %v, want success", res)
	}
	list, err := f.dead.List(context.Background(), "", true)
	if err != nil || len(list) != 1 {
		t.Fatalf("dead letters = %v %v, want 1", list, err)
	}
	first := list[0]
	if first.OriginalMsgID != m.MsgId || first.Key != ev.OrderID.String() || first.ReconsumeTimes != 4 ||
		!strings.Contains(first.Reason, "broker gave up after 4 failed deliveries") || !strings.Contains(first.Reason, "carrier unreachable") {
		t.Fatalf("dead letter = %+v", first)
	}
	time.Sleep(2 * time.Millisecond) // last_seen_at has microsecond precision; make the second sighting later
	if res, _ := rec.Consume(context.Background(), m); res != consumer.ConsumeSuccess {
		t.Fatalf("recorder again = %v", res)
	}
	list, _ = f.dead.List(context.Background(), DefaultFulfillmentGroup, false)
	if len(list) != 1 || !list[0].LastSeenAt.After(first.LastSeenAt) || !list[0].FirstSeenAt.Equal(first.FirstSeenAt) {
		t.Fatalf("after a redelivery: %+v (first %+v), want one row with last_seen_at moved", list, first)
	}
	if got := counterValue(f.metrics.deadLetters.WithLabelValues(sourceDLQ)); got != 1 {
		t.Fatalf("dead_letters_total{source=dlq} = %v, want 1", got)
	}
	// A recorder in another process does not know the error.
	other, _ := NewDeadLetterRecorder(f.dead, DefaultFulfillmentGroup, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	m2 := paidMessage(t, paidEvent())
	if res, _ := other.Consume(context.Background(), m2); res != consumer.ConsumeSuccess {
		t.Fatal(res)
	}
}

// TestReplay: a replay applies a dead letter once and marks it; a second
// replay finds it applied; malformed or unknown ones are refused.
func TestReplay(t *testing.T) {
	f := newFulfillmentFixture(t, sharedMySQL)
	ctx := context.Background()
	ev := paidEvent()
	body, _ := json.Marshal(ev)
	now := time.Now()
	record := func(group, msgID, key string, body []byte) int64 {
		t.Helper()
		if _, err := f.dead.Record(ctx, DeadLetter{Group: group, OriginalMsgID: msgID, Key: key, Body: body, ReconsumeTimes: 3, Reason: "test"}, now); err != nil {
			t.Fatal(err)
		}
		list, err := f.dead.List(ctx, group, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.OriginalMsgID == msgID {
				return d.ID
			}
		}
		t.Fatalf("dead letter %s not stored", msgID)
		return 0
	}
	good := record(DefaultFulfillmentGroup, "MSG-GOOD", ev.OrderID.String(), body)
	bad := record(DefaultFulfillmentGroup, "MSG-BAD", "k", []byte("nope"))
	foreign := record("billing", "MSG-FOREIGN", ev.OrderID.String(), body)

	out, err := f.h.Replay(ctx, good)
	if err != nil || out != ReplayApplied {
		t.Fatalf("Replay = %v %v, want applied", out, err)
	}
	d, err := f.dead.Get(ctx, good)
	if err != nil || d.ReplayedAt == nil {
		t.Fatalf("after replay: %+v %v, want replayed_at set", d, err)
	}
	out, err = f.h.Replay(ctx, good)
	if err != nil || out != ReplayAlreadyApplied {
		t.Fatalf("second Replay = %v %v, want already applied", out, err)
	}
	if n := f.shipments(t, ev.OrderID); n != 1 {
		t.Fatalf("shipments = %d, want 1", n)
	}
	if _, err := f.h.Replay(ctx, bad); !errors.Is(err, ErrNotReplayable) {
		t.Fatalf("Replay of a malformed body = %v, want ErrNotReplayable", err)
	}
	if _, err := f.h.Replay(ctx, foreign); !errors.Is(err, ErrNotReplayable) {
		t.Fatalf("Replay of another group's letter = %v, want ErrNotReplayable", err)
	}
	if _, err := f.h.Replay(ctx, 999999); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("Replay of an unknown id = %v, want order.ErrNotFound", err)
	}
	pending, _ := f.dead.List(ctx, DefaultFulfillmentGroup, true)
	if len(pending) != 1 || pending[0].ID != bad {
		t.Fatalf("pending dead letters = %+v, want only the malformed one", pending)
	}
	// A failing downstream fails the replay and leaves the letter pending.
	ev2 := paidEvent()
	body2, _ := json.Marshal(ev2)
	id2 := record(DefaultFulfillmentGroup, "MSG-2", ev2.OrderID.String(), body2)
	f.setFail(func(order.PaidEvent, int32) error { return errors.New("still broken") })
	if _, err := f.h.Replay(ctx, id2); err == nil || !strings.Contains(err.Error(), "still broken") {
		t.Fatalf("Replay with the cause still there = %v", err)
	}
	if d, _ := f.dead.Get(ctx, id2); d.ReplayedAt != nil {
		t.Fatal("a failed replay marked the letter replayed")
	}
}
