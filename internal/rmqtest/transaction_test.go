package rmqtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

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
	// Check rounds until the listener commits on its second check.
	eventually(t, 10*time.Second, "unknown transaction committed after checks", func() bool {
		s.CheckNow()
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
	if n := len(s.Messages(rmqtest.HalfTopic)); n != 3 {
		t.Errorf("half topic holds %d messages, want 3", n)
	}
}
