package halfmsg_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/halfmsg"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

var sharedRedis *testenv.RedisServer

func TestMain(m *testing.M) {
	rmqtest.SuppressClientRaces()
	os.Exit(testenv.RunMain(m, nil, &sharedRedis))
}

const (
	topic = "ORDER_PAID"
	group = "order-tx-producer"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// world is a broker with a transactional producer whose local transaction
// answers UNKNOWN (as orderd's does), Redis, and the fast-commit parts.
type world struct {
	t         *testing.T
	mq        *rmqtest.Server
	reg       *prometheus.Registry
	store     *halfmsg.Store
	recorder  *halfmsg.Recorder
	committer *halfmsg.Committer
	producer  interface {
		SendMessageInTransaction(context.Context, *primitive.Message) (*primitive.TransactionSendResult, error)
	}
	checks atomic.Int64
}

type unknownTx struct{ w *world }

func (u unknownTx) ExecuteLocalTransaction(*primitive.Message) primitive.LocalTransactionState {
	return primitive.UnknowState
}

// CheckLocalTransaction answers UNKNOWN and, as listener.Transaction
// does, moves the order's coordinates to the copy the check names.
func (u unknownTx) CheckLocalTransaction(msg *primitive.MessageExt) primitive.LocalTransactionState {
	if id, err := uuid.Parse(msg.GetKeys()); err == nil {
		u.w.recorder.Moved(id, msg)
	}
	u.w.checks.Add(1)
	return primitive.UnknowState
}

func newWorld(t *testing.T, mqOpts rmqtest.Options, cfg halfmsg.CommitterConfig) *world {
	t.Helper()
	if mqOpts.Topics == nil {
		mqOpts.Topics = map[string]int{topic: 4}
	}
	if mqOpts.TransactionTimeout == 0 {
		mqOpts.TransactionTimeout, mqOpts.CheckInterval = time.Hour, time.Hour
	}
	w := &world{t: t, mq: rmqtest.RunT(t, mqOpts), reg: prometheus.NewRegistry()}
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(t)})
	t.Cleanup(func() { rdb.Close() })
	var err error
	if w.store, err = halfmsg.NewStore(rdb, halfmsg.StoreConfig{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if w.recorder, err = halfmsg.NewRecorder(w.store, w.reg, quiet(), halfmsg.RecorderConfig{ProducerGroup: group}); err != nil {
		t.Fatal(err)
	}
	ns := w.mq.NameServerAddr()
	cfg.NameServers, cfg.Topic = func() []string { return []string{ns} }, topic
	if w.committer, err = halfmsg.NewCommitter(w.store, w.reg, quiet(), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = w.recorder.Run(ctx); done <- struct{}{} }()
	go func() { _ = w.committer.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		w.committer.Close()
	})
	p, err := producer.NewTransactionProducer(unknownTx{w},
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{w.mq.NameServerAddr()})),
		producer.WithGroupName(group), producer.WithInstanceName("halfmsg-test-"+uuid.NewString()[:8]))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	w.producer = p
	return w
}

// place sends a half message for a new order id and records its
// coordinates as the placer does.
func (w *world) place() uuid.UUID {
	w.t.Helper()
	id := uuid.New()
	msg := primitive.NewMessage(topic, []byte(`{"order_id":"`+id.String()+`"}`))
	msg.WithKeys([]string{id.String()})
	res, err := w.producer.SendMessageInTransaction(context.Background(), msg)
	if err != nil || res.Status != primitive.SendOK {
		w.t.Fatalf("send half message: %v %v", res, err)
	}
	w.recorder.Record(id, res.SendResult)
	waitFor(w.t, 5*time.Second, "coordinates recorded", func() bool {
		_, err := w.store.Get(context.Background(), id)
		return err == nil
	})
	return id
}

func (w *world) published(id uuid.UUID) int {
	n := 0
	for _, m := range w.mq.Messages(topic) {
		if m.Keys == id.String() {
			n++
		}
	}
	return n
}

func (w *world) counter(name string, labels ...string) float64 {
	w.t.Helper()
	return counter(w.t, w.reg, name, labels...)
}

// counter sums the counter name over the series whose labels include the
// given name/value pairs.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommitReleasesTheHalfMessage(t *testing.T) {
	w := newWorld(t, rmqtest.Options{}, halfmsg.CommitterConfig{})
	id := w.place()
	if w.published(id) != 0 {
		t.Fatal("published before the commit")
	}
	w.committer.Commit(id)
	waitFor(t, 5*time.Second, "the event on the topic", func() bool { return w.published(id) == 1 })
	waitFor(t, 5*time.Second, "the commit recorded", func() bool {
		ok, err := w.committer.Committed(context.Background(), id)
		return err == nil && ok
	})
	if got := w.counter("txorder_fastcommit_accepted_total", "action", "commit"); got != 1 {
		t.Errorf("accepted = %v, want 1", got)
	}
	if st := w.mq.Transactions(); st != (rmqtest.TransactionStats{Committed: 1}) {
		t.Errorf("broker transactions %+v, want 1 committed", st)
	}
	if w.checks.Load() != 0 {
		t.Errorf("%d check-backs reached the producer, want none", w.checks.Load())
	}
}

// TestCommitAfterCheckBacks: every check re-puts the half message and only
// an END_TRANSACTION naming the latest copy ends the transaction. With the
// coordinates moved by each check-back, the fast commit ends it: no
// further check, no second copy of the event.
func TestCommitAfterCheckBacks(t *testing.T) {
	w := newWorld(t, rmqtest.Options{TransactionTimeout: time.Millisecond, CheckInterval: time.Hour}, halfmsg.CommitterConfig{})
	id := w.place()
	placed, err := w.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		w.mq.CheckNow()
		waitFor(t, 5*time.Second, "the check answered and the coordinates moved", func() bool {
			c, err := w.store.Get(context.Background(), id)
			return w.checks.Load() == int64(i) && err == nil && c.QueueOffset > placed.QueueOffset+int64(i-1)
		})
	}
	moved, _ := w.store.Get(context.Background(), id)
	live := w.mq.PendingHalfMessages()[0]
	if moved.QueueOffset != live.QueueOffset || moved.CommitLogOffset != live.CommitLogOffset ||
		moved.MsgID != placed.MsgID || moved.BrokerName != placed.BrokerName {
		t.Fatalf("coordinates %+v after two checks, want the live copy's offsets (%d, %d) and the rest unchanged (%+v)",
			moved, live.QueueOffset, live.CommitLogOffset, placed)
	}
	w.committer.Commit(id)
	waitFor(t, 5*time.Second, "the event on the topic", func() bool { return w.published(id) == 1 })
	if st := w.mq.Transactions(); st != (rmqtest.TransactionStats{Committed: 1}) {
		t.Fatalf("broker transactions %+v, want the transaction ended by the fast commit", st)
	}
	w.mq.CheckNow()
	if w.checks.Load() != 2 || w.published(id) != 1 {
		t.Fatalf("%d checks, %d copies of the event: want no check after the commit and one event", w.checks.Load(), w.published(id))
	}
}

func TestMoveFollowsTheLatestCopy(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(t)})
	defer rdb.Close()
	store, err := halfmsg.NewStore(rdb, halfmsg.StoreConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	known, unknown := uuid.New(), uuid.New()
	c := halfmsg.Coordinates{BrokerName: "b|with,odd-chars", CommitLogOffset: 100, QueueOffset: 5, MsgID: "m", ProducerGroup: group}
	move := func(id uuid.UUID, q, off int64) halfmsg.Record {
		return halfmsg.Record{OrderID: id, Moved: true, Coordinates: halfmsg.Coordinates{QueueOffset: q, CommitLogOffset: off}}
	}
	if err := store.Put(ctx, []halfmsg.Record{{OrderID: known, Coordinates: c}, move(unknown, 9, 900), move(known, 6, 600), move(known, 7, 700)}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, unknown); !errors.Is(err, halfmsg.ErrNotFound) {
		t.Fatalf("a move alone made coordinates for an unrecorded order: %v", err)
	}
	got, err := store.Get(ctx, known)
	want := c
	want.QueueOffset, want.CommitLogOffset = 7, 700
	if err != nil || got != want {
		t.Fatalf("after moves to 6 then 7: %+v, %v; want %+v", got, err, want)
	}
	for _, key := range []string{"txorder:halfmsg:" + known.String(), "txorder:halfmsg:live:" + known.String()} {
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
			t.Fatalf("TTL of %s = %s, want at most a minute", key, ttl)
		}
	}
	if err := store.Delete(ctx, known); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, known); !errors.Is(err, halfmsg.ErrNotFound) {
		t.Fatalf("after Delete: %v, want ErrNotFound", err)
	}
}

func TestRollbackEndsTheHalfMessage(t *testing.T) {
	w := newWorld(t, rmqtest.Options{}, halfmsg.CommitterConfig{})
	id := w.place()
	w.committer.Rollback(id)
	waitFor(t, 5*time.Second, "the half message rolled back", func() bool {
		return w.mq.Transactions() == rmqtest.TransactionStats{RolledBack: 1}
	})
	if w.published(id) != 0 {
		t.Fatal("a rolled-back order was published")
	}
	if ok, _ := w.committer.Committed(context.Background(), id); ok {
		t.Fatal("a rollback was recorded as a commit")
	}
}

func TestNoCoordinatesIsSkipped(t *testing.T) {
	w := newWorld(t, rmqtest.Options{}, halfmsg.CommitterConfig{})
	id := w.place()
	if err := w.store.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	w.committer.Commit(id)
	waitFor(t, 5*time.Second, "the skip counted", func() bool {
		return w.counter("txorder_fastcommit_skipped_total", "reason", "no_coordinates") == 1
	})
	if st := w.mq.Transactions(); st.Pending != 1 || w.counter("txorder_fastcommit_sent_total") != 0 {
		t.Fatalf("broker %+v, sent %v: want the half message left to its check-back", st, w.counter("txorder_fastcommit_sent_total"))
	}
}

// TestLeaderChangeIsFollowed: the master of the broker name moves to the
// follower after the committer cached the route; the old master refuses
// as a slave, and the committer sends once more to the master a fresh
// route names.
func TestLeaderChangeIsFollowed(t *testing.T) {
	w := newWorld(t, rmqtest.Options{Follower: true}, halfmsg.CommitterConfig{RouteTTL: time.Hour})
	warm := w.place()
	w.committer.Commit(warm) // caches the route to the first master
	waitFor(t, 5*time.Second, "the first commit", func() bool { return w.published(warm) == 1 })
	id := w.place()
	if err := w.mq.SwitchLeader(); err != nil {
		t.Fatal(err)
	}
	w.committer.Commit(id)
	waitFor(t, 5*time.Second, "the commit on the new master", func() bool { return w.published(id) == 1 })
	waitFor(t, 5*time.Second, "both commits accepted", func() bool {
		return w.counter("txorder_fastcommit_accepted_total", "action", "commit") == 2
	})
	if got := w.counter("txorder_fastcommit_refused_total", "reason", "slave_not_available"); got != 1 {
		t.Errorf("slave refusals = %v, want 1 (the stale route)", got)
	}
}

// TestNameServerDownUsesLastKnownMaster: with every NameServer down the
// producer keeps sending on its cached routes, and the fast commit keeps
// going to the master the last route named.
func TestNameServerDownUsesLastKnownMaster(t *testing.T) {
	w := newWorld(t, rmqtest.Options{}, halfmsg.CommitterConfig{})
	warm := w.place()
	w.committer.Commit(warm)
	waitFor(t, 5*time.Second, "the first commit", func() bool { return w.published(warm) == 1 })
	w.mq.StopNameServer()
	id := w.place()
	w.committer.Commit(id)
	waitFor(t, 10*time.Second, "the commit during the NameServer outage", func() bool { return w.published(id) == 1 })
	if got := w.counter("txorder_fastcommit_stale_routes_total"); got < 1 {
		t.Errorf("stale routes = %v, want the last known master used", got)
	}
}

// TestHungBrokerStaysBounded: the broker answers nothing in time. Each
// release gives up after its timeout, and the queue sheds what does not
// fit instead of growing.
func TestHungBrokerStaysBounded(t *testing.T) {
	const timeout = 300 * time.Millisecond
	w := newWorld(t, rmqtest.Options{}, halfmsg.CommitterConfig{Workers: 2, Queue: 4, Timeout: timeout})
	ids := []uuid.UUID{w.place(), w.place()}
	w.mq.DelayResponses(time.Minute)
	defer w.mq.ClearFaults()
	start := time.Now()
	for range 20 {
		w.committer.Commit(ids[0])
	}
	w.committer.Commit(ids[1])
	skipped := w.counter("txorder_fastcommit_skipped_total", "reason", "queue_full")
	if skipped < 20-2-4 {
		t.Errorf("queue_full skips = %v, want at least %d with 2 workers and a queue of 4", skipped, 20-2-4)
	}
	waitFor(t, 10*time.Second, "every queued release to give up", func() bool {
		return w.counter("txorder_fastcommit_failed_total")+skipped == 21
	})
	if w.counter("txorder_fastcommit_accepted_total") != 0 {
		t.Fatal("a release to a hung broker counted as accepted")
	}
	t.Logf("21 releases to a hung broker settled in %s (timeout %s, 2 workers)", time.Since(start).Round(time.Millisecond), timeout)
}

func TestRecorderDropsWhenFullAndRecordsInvalidResults(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis.Addr(), DB: sharedRedis.NewDB(t)})
	defer rdb.Close()
	store, err := halfmsg.NewStore(rdb, halfmsg.StoreConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r, err := halfmsg.NewRecorder(store, reg, quiet(), halfmsg.RecorderConfig{ProducerGroup: group, Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	res := &primitive.SendResult{MsgID: "7F0000010001000000000000000000AA", OffsetMsgID: "7F00000100002A9F0000000000000400",
		QueueOffset: 3, MessageQueue: &primitive.MessageQueue{Topic: topic, BrokerName: "broker-a"}}
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	for _, id := range ids {
		r.Record(id, res) // not running: the third does not fit
	}
	r.Record(uuid.New(), &primitive.SendResult{MsgID: "x", OffsetMsgID: "not-hex", MessageQueue: &primitive.MessageQueue{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 5*time.Second, "the queued coordinates written", func() bool {
		_, err := store.Get(context.Background(), ids[1])
		return err == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, err := store.Get(context.Background(), ids[0])
	if err != nil || c != (halfmsg.Coordinates{BrokerName: "broker-a", CommitLogOffset: 0x400, QueueOffset: 3,
		MsgID: res.MsgID, ProducerGroup: group}) {
		t.Fatalf("coordinates = %+v, %v", c, err)
	}
	if _, err := store.Get(context.Background(), ids[2]); !errors.Is(err, halfmsg.ErrNotFound) {
		t.Fatalf("the dropped one: %v, want ErrNotFound", err)
	}
	for outcome, n := range map[string]float64{"written": 2, "dropped": 1, "invalid": 1} {
		if got := counter(t, reg, "txorder_fastcommit_coordinates_total", "outcome", outcome); got != n {
			t.Errorf("coordinates %s = %v, want %v", outcome, got, n)
		}
	}
}

// releases records what the payments decorator queued.
type releases struct{ ids []uuid.UUID }

func (r *releases) Commit(id uuid.UUID) { r.ids = append(r.ids, id) }

type fixedPayments struct {
	res payment.Result
	err error
}

func (f fixedPayments) Verify(string, []byte) error { return nil }
func (f fixedPayments) Notify(context.Context, payment.Notification) (payment.Result, error) {
	return f.res, f.err
}

func TestPaymentsQueueACommitOnlyForAnAppliedPayment(t *testing.T) {
	id := uuid.New()
	applied := payment.Result{Payment: payment.Payment{OrderID: id, Status: payment.StatusApplied}, OrderStatus: order.StatusPaid,
		MarkedPaid: true}
	// A replay of that payment: the same payment and order status, but
	// this call moved nothing (payment.Result.MarkedPaid).
	replayed := applied
	replayed.Replayed, replayed.MarkedPaid = true, false
	refund := payment.Result{Payment: payment.Payment{OrderID: id, Status: payment.StatusRefundRequired}, OrderStatus: order.StatusClosed}
	tests := []struct {
		name string
		svc  fixedPayments
		want int
	}{
		{"applied, order paid", fixedPayments{res: applied}, 1},
		{"replayed", fixedPayments{res: replayed}, 0},
		{"order closed", fixedPayments{res: refund, err: payment.ErrOrderClosed}, 0},
		{"mysql down", fixedPayments{err: order.ErrUnavailable}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r releases
			p := halfmsg.NewPayments(tt.svc, &r)
			res, err := p.Notify(context.Background(), payment.Notification{})
			if res != tt.svc.res || !errors.Is(err, tt.svc.err) {
				t.Fatalf("Notify = %+v, %v; want the wrapped service's answer", res, err)
			}
			if len(r.ids) != tt.want || tt.want == 1 && r.ids[0] != id {
				t.Fatalf("commits queued %v, want %d for %s", r.ids, tt.want, id)
			}
		})
	}
}
