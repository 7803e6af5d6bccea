package listener

import (
	"context"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
)

// BenchmarkCheckPending answers check-backs for pending (unpaid, before
// the deadline) orders, the steady state of a busy shop: each check is one
// primary-key read. The client answers check-backs one at a time, so
// checks/s is the most pending orders one check interval can cover,
// divided by the interval.
func BenchmarkCheckPending(b *testing.B) {
	f := newFixture(&testing.T{}, sharedMySQL, sharedRedis)
	ctx := context.Background()
	const k = 2000
	keys := make([]string, k)
	for i := range keys {
		o := f.newOrder(uuid.NewString())
		o.PaymentDeadline = f.now.Add(time.Hour)
		if err := f.store.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
		keys[i] = o.ID.String()
	}
	msg := &primitive.MessageExt{Message: primitive.Message{Topic: "ORDER_PAID"}}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		msg.WithKeys([]string{keys[i%k]})
		if got := f.tx.CheckLocalTransaction(msg); got != primitive.UnknowState {
			b.Fatalf("check = %v, want UNKNOWN", got)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
}

// BenchmarkStoreGetVsState compares the full read (order + items, two
// queries) with the state read a check-back uses.
func BenchmarkStoreGetVsState(b *testing.B) {
	f := newFixture(&testing.T{}, sharedMySQL, sharedRedis)
	ctx := context.Background()
	o := f.newOrder("bench")
	if err := f.store.Create(ctx, o); err != nil {
		b.Fatal(err)
	}
	b.Run("Get", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := f.store.Get(ctx, o.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetState", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := f.store.GetState(ctx, o.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}
