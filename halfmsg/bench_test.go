package halfmsg_test

import (
	"context"
	"strconv"
	"strings"
	"syscall"
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

// BenchmarkRecord is what the fast commit adds to every placement: the
// coordinates taken from the send result and queued (on the placement's
// goroutine), then written in pipelined batches. It reports the CPU time
// per placement of this process (the queueing and the writer) and of
// redis-server (INFO cpu), which is what placements lose to it on a
// machine where CPU is the limit; compare with orderd's ~0.58 ms of CPU
// per placement (docs/performance.md).
func BenchmarkRecord(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(b)})
	defer rdb.Close()
	store, err := halfmsg.NewStore(rdb, halfmsg.StoreConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r, err := halfmsg.NewRecorder(store, reg, quiet(), halfmsg.RecorderConfig{ProducerGroup: group, Queue: b.N})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	ids := make([]uuid.UUID, b.N)
	for i := range ids {
		ids[i] = uuid.New()
	}
	res := &primitive.SendResult{MsgID: "7F0000010001000000000000000000AA", OffsetMsgID: "7F00000100002A9F0000000000000400",
		QueueOffset: 3, MessageQueue: &primitive.MessageQueue{Topic: "ORDER_PAID", BrokerName: "broker-a"}}
	selfBefore, redisBefore := cpuSelf(), redisCPU(b, rdb)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Record(ids[i], res)
	}
	for counter(&testing.T{}, reg, "txorder_fastcommit_coordinates_total") < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	self, rd := cpuSelf()-selfBefore, redisCPU(b, rdb)-redisBefore
	cancel()
	<-done
	b.ReportMetric(float64(self.Microseconds())/float64(b.N), "µs-cpu-orderd/placement")
	b.ReportMetric(float64(rd.Microseconds())/float64(b.N), "µs-cpu-redis/placement")
	b.ReportMetric(counter(&testing.T{}, reg, "txorder_fastcommit_coordinates_total", "outcome", "dropped"), "dropped")
}

// cpuSelf is this process's user + system CPU time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is redis-server's user + system CPU time (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
