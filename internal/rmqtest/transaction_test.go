package rmqtest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/txorder/txorder/internal/rmqtest"
)

func TestTransactionOutcomes(t *testing.T) {
	const topic = "orders"
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: 50 * time.Millisecond,
		CheckInterval:      time.Hour, // rounds are driven by CheckNow
	})
	unknownChecks := 0
	l := &txListener{
		exec: func(m *primitive.Message) primitive.LocalTransactionState {
			switch m.GetTags() {
			case "commit":
				return primitive.CommitMessageState
			case "rollback":
				return primitive.RollbackMessageState
			default:
				return primitive.UnknowState
			}
		},
	}
	l.check = func(m *primitive.MessageExt) primitive.LocalTransactionState {
		if m.GetTags() == "unknown-then-commit" {
			unknownChecks++
			if unknownChecks >= 2 {
				return primitive.CommitMessageState
			}
		}
		return primitive.UnknowState
	}
	p := startTxProducer(t, s, l, uniq(t, "txg"))

	// A push consumer in the same process, with its own instance name.
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))

	ctx := context.Background()
	for _, tag := range []string{"commit", "rollback", "unknown-then-commit"} {
		res, err := p.SendMessageInTransaction(ctx, primitive.NewMessage(topic, []byte(tag)).WithTag(tag))
		if err != nil {
			t.Fatalf("send %s: %v", tag, err)
		}
		if res.Status != primitive.SendOK {
			t.Fatalf("send %s: status %v, want SendOK", tag, res.Status)
		}
	}

	eventually(t, 5*time.Second, "committed message consumed", func() bool { return got.count("commit") == 1 })
	eventually(t, 5*time.Second, "only the unknown transaction left pending", func() bool {
		return len(s.PendingHalfMessages()) == 1
	})
	// Check rounds, each answered before the next (a check that crosses
	// the answer to an earlier one names a newer copy, and two COMMITs
	// write two messages, as on a real broker), until the listener commits
	// on its second check.
	eventually(t, time.Second, "half message older than the transaction timeout", func() bool {
		h := s.PendingHalfMessages()
		return len(h) == 1 && time.Since(h[0].BornTimestamp) > 100*time.Millisecond
	})
	for round := 0; len(s.PendingHalfMessages()) > 0; round++ {
		if round == 10 {
			t.Fatal("the unknown transaction was not committed after 10 check rounds")
		}
		before := l.checks.Load()
		s.CheckNow()
		eventually(t, 5*time.Second, "the check answered", func() bool { return l.checks.Load() > before })
		eventually(t, 5*time.Second, "the answer applied", func() bool {
			return unknownChecks < 2 || len(s.PendingHalfMessages()) == 0
		})
	}
	eventually(t, 10*time.Second, "unknown transaction committed after checks", func() bool {
		return got.count("unknown-then-commit") == 1
	})
	never(t, 300*time.Millisecond, "a message delivered twice or a rollback delivered", func() bool {
		return got.count("commit") > 1 || got.count("unknown-then-commit") > 1 || got.count("rollback") > 0
	})
	if n := len(s.PendingHalfMessages()); n != 0 {
		t.Errorf("pending half messages: got %d, want 0", n)
	}
	for _, m := range got.all() {
		if m.SysFlag&8 == 0 {
			t.Errorf("committed message %s: sysFlag %d, want bit 8 set", m.MsgId, m.SysFlag)
		}
		if m.GetProperty("TRAN_MSG") != "" || m.GetProperty("REAL_TOPIC") != "" {
			t.Errorf("committed message %s keeps half properties: %v", m.MsgId, m.GetProperties())
		}
	}
	// Each check re-put a copy of the unknown one, as Java does; copies
	// keep the message id.
	ids := map[string]int{}
	for _, m := range s.Messages(rmqtest.HalfTopic) {
		ids[m.MsgID]++
	}
	if n := len(s.Messages(rmqtest.HalfTopic)); len(ids) != 3 || n != 3+int(l.checks.Load()) {
		t.Errorf("half topic holds %d messages %v, want 3 half messages plus one copy per check (%d)", n, ids, l.checks.Load())
	}
}

func TestUnknownForeverGoesToCheckMaxTopic(t *testing.T) {
	const topic, checkMax = "undecided", 3
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour,
		CheckMax:           checkMax,
	})
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.UnknowState },
	}
	p := startTxProducer(t, s, l, uniq(t, "txg"))
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))

	res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("maybe")))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	// Rounds only check halves older than TransactionTimeout.
	eventually(t, time.Second, "half message older than the transaction timeout", func() bool {
		h := s.PendingHalfMessages()
		return len(h) == 1 && time.Since(h[0].StoreTimestamp) > 5*time.Millisecond
	})
	for i := 1; i <= checkMax; i++ {
		s.CheckNow()
		eventually(t, 5*time.Second, "check answered", func() bool { return l.checks.Load() == int64(i) })
	}
	if n := len(s.Messages(rmqtest.CheckMaxTopic)); n != 0 {
		t.Fatalf("moved to %s after %d checks, want after %d", rmqtest.CheckMaxTopic, checkMax, checkMax)
	}
	s.CheckNow() // one more round: the transaction is discarded, not checked
	eventually(t, 5*time.Second, "half message moved to "+rmqtest.CheckMaxTopic, func() bool {
		return len(s.Messages(rmqtest.CheckMaxTopic)) == 1
	})
	m := s.Messages(rmqtest.CheckMaxTopic)[0]
	if m.MsgID != res.MsgID || m.Properties["TRANSACTION_CHECK_TIMES"] != "3" || m.Properties["REAL_TOPIC"] != topic {
		t.Errorf("check-max message: got id %s props %v, want id %s with TRANSACTION_CHECK_TIMES=3 REAL_TOPIC=%s",
			m.MsgID, m.Properties, res.MsgID, topic)
	}
	if n := len(s.PendingHalfMessages()); n != 0 {
		t.Errorf("pending half messages: got %d, want 0", n)
	}
	s.CheckNow()
	never(t, 200*time.Millisecond, "a check after the discard or a delivery", func() bool {
		return l.checks.Load() != checkMax || got.len() != 0
	})
}

// TestCheckBackWithConsumerInSameProcess starts a push consumer before the
// transaction producer, in the same process: with distinct instance names
// they are two client instances with their own sockets, and the server
// sends the check on the producer group's socket only.
func TestCheckBackWithConsumerInSameProcess(t *testing.T) {
	const topic = "sameproc"
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: 20 * time.Millisecond,
		CheckInterval:      20 * time.Millisecond, // the real timer, no CheckNow
	})
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.CommitMessageState },
	}
	p := startTxProducer(t, s, l, uniq(t, "txg"))
	if _, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("late"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, 5*time.Second, "message committed by the check-back and consumed", func() bool { return got.count("late") == 1 })
	never(t, 100*time.Millisecond, "the message delivered twice", func() bool { return got.count("late") > 1 })
}

func TestCheckImmunityTimeIsHonoured(t *testing.T) {
	const topic = "immune"
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour,
	})
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.RollbackMessageState },
	}
	p := startTxProducer(t, s, l, uniq(t, "txg"))
	msg := primitive.NewMessage(topic, []byte("immune"))
	msg.WithProperty("CHECK_IMMUNITY_TIME_IN_SECONDS", "1")
	sent := time.Now()
	if _, err := p.SendMessageInTransaction(context.Background(), msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	s.CheckNow()
	never(t, 100*time.Millisecond, "a check within the immunity time", func() bool { return l.checks.Load() > 0 })
	eventually(t, 5*time.Second, "a check after the immunity time", func() bool {
		s.CheckNow()
		return l.checks.Load() >= 1
	})
	if d := time.Since(sent); d < time.Second {
		t.Errorf("first check after %v, want >= 1s", d)
	}
	eventually(t, 5*time.Second, "rolled back", func() bool { return len(s.PendingHalfMessages()) == 0 })
}

// TestSharedInstanceNameLosesCheckBacks documents the client-identity
// quirk: a consumer created first with the same instance name as the
// transaction producer makes one shared client whose check handler is bound
// to the consumer's group, so the client drops every check the server
// sends on that shared socket. The server cannot repair it; distinct
// instance names (TestCheckBackWithConsumerInSameProcess) can.
func TestSharedInstanceNameLosesCheckBacks(t *testing.T) {
	const topic = "shared"
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour,
	})
	instance := uniq(t, "shared")
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&received{}), consumer.WithInstance(instance))
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.CommitMessageState },
	}
	p, err := producer.NewTransactionProducer(l, producer.WithNameServer(nsOpt(s)), producer.WithGroupName(uniq(t, "txg")),
		producer.WithInstanceName(instance))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	shutdownLater(t, "transaction producer", p.Shutdown)
	if _, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("lost"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	for i := 1; i <= 3; i++ {
		eventually(t, time.Second, "half message older than the transaction timeout", func() bool {
			h := s.PendingHalfMessages()
			return len(h) == 1 && time.Since(h[0].StoreTimestamp) > 5*time.Millisecond
		})
		s.CheckNow()
		if got := s.PendingHalfMessages()[0].Properties["TRANSACTION_CHECK_TIMES"]; got != strconv.Itoa(i) {
			t.Fatalf("checks sent: got %s, want %d", got, i)
		}
	}
	never(t, 200*time.Millisecond, "the shared client answering a check", func() bool { return l.checks.Load() > 0 })
}

// TestLostCommitRepairedByCheck drops the producer's one-way COMMIT: the
// transaction stays pending and the next check-back commits it.
func TestLostCommitRepairedByCheck(t *testing.T) {
	const topic = "lostcommit"
	s := rmqtest.RunT(t, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour,
	})
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.CommitMessageState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.CommitMessageState },
	}
	p := startTxProducer(t, s, l, uniq(t, "txg"))
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))
	s.DropNextEndTransactions(1)
	if _, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("lost"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	never(t, 100*time.Millisecond, "a dropped commit delivered", func() bool { return got.len() > 0 })
	if st := s.Transactions(); st.Pending != 1 {
		t.Fatalf("transactions %+v, want 1 pending", st)
	}
	s.CheckNow()
	eventually(t, 5*time.Second, "committed by the check-back", func() bool { return got.count("lost") == 1 })
	if st := s.Transactions(); st != (rmqtest.TransactionStats{Committed: 1}) {
		t.Errorf("transactions %+v, want 1 committed", st)
	}
}
