package rmqtest_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/txorder/txorder/internal/rmqtest"
)

var clientPanics atomic.Value // string: the first panic inside a client goroutine

func TestMain(m *testing.M) {
	rmqtest.SuppressClientRaces()
	rlog.SetLogLevel("fatal")
	// A panic in a client goroutine would kill the test binary; record it
	// and fail the running test instead.
	primitive.PanicHandler = func(v any) {
		clientPanics.CompareAndSwap(nil, fmt.Sprint(v))
	}
	os.Exit(m.Run())
}

func checkNoClientPanic(t testing.TB) {
	t.Helper()
	if v := clientPanics.Load(); v != nil {
		t.Errorf("panic inside rocketmq-client-go: %v", v)
	}
}

var nameSeq atomic.Int64

var nonName = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// uniq returns a name unique in this process: client instances are keyed
// by ip@instanceName, so every producer and consumer gets its own.
func uniq(t testing.TB, kind string) string {
	base := nonName.ReplaceAllString(t.Name(), "_")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	return fmt.Sprintf("%s-%s-%d", kind, base, nameSeq.Add(1))
}

// eventually polls cond every 5ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// never checks that cond stays false for d.
func never(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpected: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nsOpt(s *rmqtest.Server) primitive.NamesrvAddr {
	return primitive.NamesrvAddr{s.NameServerAddr()}
}

func shutdownLater(t testing.TB, name string, shutdown func() error) {
	t.Cleanup(func() {
		if err := shutdown(); err != nil {
			t.Logf("shutdown %s: %v", name, err)
		}
		checkNoClientPanic(t)
	})
}

func startProducer(t testing.TB, s *rmqtest.Server, opts ...producer.Option) interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
	SendAsync(context.Context, func(context.Context, *primitive.SendResult, error), ...*primitive.Message) error
	SendOneWay(context.Context, ...*primitive.Message) error
	Shutdown() error
} {
	t.Helper()
	all := append([]producer.Option{
		producer.WithNameServer(nsOpt(s)),
		producer.WithGroupName(uniq(t, "pg")),
		producer.WithInstanceName(uniq(t, "p")),
		producer.WithRetry(2),
	}, opts...)
	p, err := producer.NewDefaultProducer(all...)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start producer: %v", err)
	}
	shutdownLater(t, "producer", p.Shutdown)
	return p
}

// txListener answers ExecuteLocalTransaction and CheckLocalTransaction
// from functions keyed by the message's TAGS.
type txListener struct {
	exec   func(*primitive.Message) primitive.LocalTransactionState
	check  func(*primitive.MessageExt) primitive.LocalTransactionState
	checks atomic.Int64
}

func (l *txListener) ExecuteLocalTransaction(m *primitive.Message) primitive.LocalTransactionState {
	return l.exec(m)
}

func (l *txListener) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	l.checks.Add(1)
	return l.check(m)
}

func startTxProducer(t testing.TB, s *rmqtest.Server, l primitive.TransactionListener, group string) interface {
	SendMessageInTransaction(context.Context, *primitive.Message) (*primitive.TransactionSendResult, error)
	Shutdown() error
} {
	t.Helper()
	p, err := producer.NewTransactionProducer(l,
		producer.WithNameServer(nsOpt(s)),
		producer.WithGroupName(group),
		producer.WithInstanceName(uniq(t, "txp")),
		producer.WithRetry(2),
	)
	if err != nil {
		t.Fatalf("new transaction producer: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start transaction producer: %v", err)
	}
	shutdownLater(t, "transaction producer", p.Shutdown)
	return p
}

// received records consumed messages.
type received struct {
	mu   sync.Mutex
	msgs []*primitive.MessageExt
}

func (r *received) add(ms ...*primitive.MessageExt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, ms...)
}

func (r *received) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *received) all() []*primitive.MessageExt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*primitive.MessageExt(nil), r.msgs...)
}

// count returns how many received messages have the given body.
func (r *received) count(body string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if string(m.Body) == body {
			n++
		}
	}
	return n
}

type pushConsumer interface {
	Start() error
	Shutdown() error
	Subscribe(string, consumer.MessageSelector, func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)) error
}

// newConsumer creates (but does not start) a clustering push consumer
// subscribed to topic with handler.
func newConsumer(t testing.TB, s *rmqtest.Server, group, topic string,
	handler func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error),
	opts ...consumer.Option) pushConsumer {
	t.Helper()
	all := append([]consumer.Option{
		consumer.WithNameServer(nsOpt(s)),
		consumer.WithGroupName(group),
		consumer.WithInstance(uniq(t, "c")),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	}, opts...)
	c, err := consumer.NewPushConsumer(all...)
	if err != nil {
		t.Fatalf("new push consumer: %v", err)
	}
	if err := c.Subscribe(topic, consumer.MessageSelector{}, handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return c
}

func startConsumer(t testing.TB, s *rmqtest.Server, group, topic string,
	handler func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error),
	opts ...consumer.Option) pushConsumer {
	t.Helper()
	c := newConsumer(t, s, group, topic, handler, opts...)
	if err := c.Start(); err != nil {
		t.Fatalf("start push consumer: %v", err)
	}
	shutdownLater(t, "consumer", c.Shutdown)
	return c
}

func recordInto(r *received) func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	return func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		r.add(ms...)
		return consumer.ConsumeSuccess, nil
	}
}
