package halfmsg_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/halfmsg"
)

// BenchmarkMoved is what the fast commit adds to every check-back answered
// UNKNOWN: the Moved call on the check-back's goroutine (ns/move-call),
// and the recorder's pipelined Lua moves in Redis behind it (moves/s
// written, with a queue large enough that none is dropped). The client
// answers check-backs one at a time, so ns/move-call is added to each
// check; moves/s must exceed the check rate, or the queue fills and moves
// are dropped (those orders' fast commits would then name an old copy and
// cost a duplicate).
func BenchmarkMoved(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(b)})
	defer rdb.Close()
	store, err := halfmsg.NewStore(rdb, halfmsg.StoreConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	const k = 10000
	ids := make([]uuid.UUID, k)
	recs := make([]halfmsg.Record, k)
	for i := range ids {
		ids[i] = uuid.New()
		recs[i] = halfmsg.Record{OrderID: ids[i], Coordinates: halfmsg.Coordinates{BrokerName: "broker-a", CommitLogOffset: int64(i),
			QueueOffset: int64(i), MsgID: "m", ProducerGroup: group}}
	}
	for lo := 0; lo < k; lo += 256 {
		if err := store.Put(context.Background(), recs[lo:min(lo+256, k)]); err != nil {
			b.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	r, err := halfmsg.NewRecorder(store, reg, quiet(), halfmsg.RecorderConfig{ProducerGroup: group, Queue: b.N})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	msg := &primitive.MessageExt{}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		msg.QueueOffset, msg.CommitLogOffset = int64(k+i), int64(k+i)
		r.Moved(ids[i%k], msg)
	}
	calls := time.Since(start)
	for {
		settled := counter(&testing.T{}, reg, "txorder_fastcommit_coordinates_total")
		if int(settled) >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	all := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(calls.Nanoseconds())/float64(b.N), "ns/move-call")
	b.ReportMetric(float64(b.N)/all.Seconds(), "moves/s")
	b.ReportMetric(counter(&testing.T{}, reg, "txorder_fastcommit_coordinates_total", "outcome", "dropped"), "dropped")
}
