package rmqtest_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/rmqtest"
)

// TestCheckBacksRoundRobinOverProducers: with three producers in one
// transactional group (three orderd replicas), check-backs go to each of
// them in turn, as Java's ProducerManager.getAvailableChannel does, and to
// none that has shut down.
func TestCheckBacksRoundRobinOverProducers(t *testing.T) {
	const topic = "orders"
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour, // rounds are driven by CheckNow
	})
	group := uniq(t, "txg")
	unknown := func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState }
	listeners := make([]*txListener, 3)
	producers := make([]interface {
		SendMessageInTransaction(context.Context, *primitive.Message) (*primitive.TransactionSendResult, error)
		Shutdown() error
	}, 3)
	for i := range listeners {
		listeners[i] = &txListener{exec: unknown,
			check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.UnknowState }}
		producers[i] = startTxProducer(t, s, listeners[i], group)
		// Each replica sends, so the broker knows its connection.
		if _, err := producers[i].SendMessageInTransaction(context.Background(),
			primitive.NewMessage(topic, []byte("order-"+strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
	total := func(ls []*txListener) int64 {
		var n int64
		for _, l := range ls {
			n += l.checks.Load()
		}
		return n
	}
	// Rounds only check halves older than TransactionTimeout.
	eventually(t, time.Second, "every half message older than the transaction timeout", func() bool {
		h := s.PendingHalfMessages()
		return len(h) == 3 && time.Since(h[2].StoreTimestamp) > 5*time.Millisecond
	})
	// 3 pending half messages × 4 rounds = 12 checks.
	for round := 1; round <= 4; round++ {
		s.CheckNow()
		eventually(t, 5*time.Second, "the round's checks answered", func() bool { return total(listeners) == int64(3*round) })
	}
	for i, l := range listeners {
		if got := l.checks.Load(); got != 4 {
			t.Errorf("producer %d answered %d of 12 checks, want 4 (round-robin)", i, got)
		}
	}

	// Once the broker has seen a producer's connection close, its turns go
	// to the others: a whole round is answered by the two left.
	if err := producers[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	survivors := listeners[:2]
	eventually(t, 10*time.Second, "a round answered entirely by the two producers left", func() bool {
		before := total(survivors)
		s.CheckNow()
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if total(survivors) == before+3 {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	})
}

// TestTwoBrokerGroups: a second broker (another name, its own process in
// rmqdev) registers with the first one's NameServer over the wire. A
// transactional producer spreads half messages over both, each broker
// checks its own, and one consumer group reads the committed messages from
// both, each exactly once.
func TestTwoBrokerGroups(t *testing.T) {
	const topic, n = "orders", 40
	opts := rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour,
	}
	a := rmqtest.RunT(t, opts)
	opts.NoNameServer, opts.BrokerName, opts.RegisterTo = true, "broker-b", []string{a.NameServerAddr()}
	b := rmqtest.RunT(t, opts)
	var mu sync.Mutex
	checkedBy := map[string]int{} // body -> checks
	l := &txListener{
		exec: func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(m *primitive.MessageExt) primitive.LocalTransactionState {
			mu.Lock()
			checkedBy[string(m.Body)]++
			mu.Unlock()
			return primitive.CommitMessageState
		},
	}
	p := startTxProducer(t, a, l, uniq(t, "txg"))
	var got received
	startConsumer(t, a, uniq(t, "cg"), topic, recordInto(&got))
	// NewServer registered broker-b with a's NameServer before returning.
	for i := range n {
		if _, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("m-"+strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
	onA, onB := len(a.PendingHalfMessages()), len(b.PendingHalfMessages())
	if onA == 0 || onB == 0 || onA+onB != n {
		t.Fatalf("half messages on broker-a %d, broker-b %d; want both used, %d in all", onA, onB, n)
	}
	// Each broker checks its own half messages, once: a second round
	// before the first COMMITs land would re-put copies and could commit a
	// message twice, as Java can (at-least-once).
	oldEnough := func(s *rmqtest.Server) bool {
		for _, h := range s.PendingHalfMessages() {
			if time.Since(h.StoreTimestamp) <= 5*time.Millisecond {
				return false
			}
		}
		return true
	}
	eventually(t, time.Second, "every half message older than the transaction timeout", func() bool {
		return oldEnough(a) && oldEnough(b)
	})
	a.CheckNow()
	b.CheckNow()
	eventually(t, 10*time.Second, "every message committed and consumed", func() bool { return got.len() >= n })
	never(t, 300*time.Millisecond, "a message delivered twice", func() bool { return got.len() > n })
	for i := range n {
		body := "m-" + strconv.Itoa(i)
		if c := got.count(body); c != 1 {
			t.Errorf("%s consumed %d times, want 1", body, c)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(checkedBy) != n {
		t.Errorf("%d of %d half messages were checked", len(checkedBy), n)
	}
	if pa, pb := len(a.PendingHalfMessages()), len(b.PendingHalfMessages()); pa+pb != 0 {
		t.Errorf("still pending: broker-a %d, broker-b %d", pa, pb)
	}
}
