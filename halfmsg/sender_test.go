package halfmsg_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/halfmsg"
	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

// scriptedTx answers each order's local transaction and check-back as
// told by its key's prefix ("commit-", "rollback-", anything else
// UNKNOWN), and counts the calls.
type scriptedTx struct {
	mu       sync.Mutex
	executed []string
	checked  []string
	check    primitive.LocalTransactionState // answer to check-backs (0: by key)
}

func answerFor(keys string) primitive.LocalTransactionState {
	switch {
	case strings.HasPrefix(keys, "commit-"):
		return primitive.CommitMessageState
	case strings.HasPrefix(keys, "rollback-"):
		return primitive.RollbackMessageState
	}
	return primitive.UnknowState
}

func (s *scriptedTx) ExecuteLocalTransaction(msg *primitive.Message) primitive.LocalTransactionState {
	s.mu.Lock()
	s.executed = append(s.executed, msg.GetKeys())
	s.mu.Unlock()
	return answerFor(msg.GetKeys())
}

func (s *scriptedTx) CheckLocalTransaction(msg *primitive.MessageExt) primitive.LocalTransactionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked = append(s.checked, msg.GetKeys())
	if s.check != 0 {
		return s.check
	}
	return answerFor(msg.GetKeys())
}

func (s *scriptedTx) counts() (executed, checked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.executed), len(s.checked)
}

func newSender(t *testing.T, tx primitive.TransactionListener, nameServers func() []string, cfg halfmsg.SenderConfig) *halfmsg.Sender {
	t.Helper()
	cfg.NameServers, cfg.Topic, cfg.ProducerGroup = nameServers, topic, group
	s, err := halfmsg.NewSender(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func fixed(addrs ...string) func() []string { return func() []string { return addrs } }

func sendHalf(t *testing.T, s *halfmsg.Sender, keys string, within time.Duration) (*primitive.TransactionSendResult, error) {
	t.Helper()
	msg := primitive.NewMessage(topic, []byte(`{"key":"`+keys+`"}`))
	msg.WithKeys([]string{keys})
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return s.SendMessageInTransaction(ctx, msg)
}

func messagesWithKeys(mq *rmqtest.Server, keys string) []rmqtest.Message {
	var out []rmqtest.Message
	for _, m := range mq.Messages(topic) {
		if m.Keys == keys {
			out = append(out, m)
		}
	}
	return out
}

// TestSenderEndsEachAnswer: a committed local transaction publishes the
// message (once, with the client's properties), a rolled-back one
// publishes nothing and leaves no half message, and an UNKNOWN one stays
// half until its check-back commits it.
func TestSenderEndsEachAnswer(t *testing.T) {
	mq := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4},
		TransactionTimeout: 200 * time.Millisecond, CheckInterval: time.Hour})
	tx := &scriptedTx{}
	s := newSender(t, tx, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{})

	for _, keys := range []string{"commit-1", "rollback-1", "unknown-1"} {
		res, err := sendHalf(t, s, keys, 2*time.Second)
		if err != nil || res.Status != primitive.SendOK || res.State != answerFor(keys) {
			t.Fatalf("%s: result %+v, error %v", keys, res, err)
		}
		if res.MsgID == "" || res.OffsetMsgID == "" || res.MessageQueue == nil || res.MessageQueue.BrokerName == "" {
			t.Fatalf("%s: incomplete send result %+v", keys, res.SendResult)
		}
	}
	waitFor(t, 5*time.Second, "the committed message published", func() bool { return len(messagesWithKeys(mq, "commit-1")) == 1 })
	m := messagesWithKeys(mq, "commit-1")[0]
	if m.Properties[primitive.PropertyProducerGroup] != group || m.Properties[primitive.PropertyUniqueClientMessageIdKeyIndex] == "" {
		t.Errorf("published message's PGROUP / UNIQ_KEY: %v", m.Properties)
	}
	waitFor(t, 5*time.Second, "only the unknown one left half", func() bool {
		p := mq.PendingHalfMessages()
		return len(p) == 1 && p[0].Keys == "unknown-1"
	})
	if h := mq.PendingHalfMessages()[0]; h.Properties[primitive.PropertyTransactionPrepared] != "true" ||
		h.Properties[primitive.PropertyProducerGroup] != group {
		t.Errorf("half message's TRAN_MSG / PGROUP: %v", h.Properties)
	}
	if n := len(messagesWithKeys(mq, "rollback-1")); n != 0 {
		t.Fatalf("rolled-back message published %d times", n)
	}

	// The broker sends the check-back on the connection the half message
	// came on (rmqtest, unlike Java, counts a sender as a producer): the
	// Sender answers it through the listener.
	tx.mu.Lock()
	tx.check = primitive.CommitMessageState
	tx.mu.Unlock()
	time.Sleep(250 * time.Millisecond) // past the transaction timeout
	mq.CheckNow()
	waitFor(t, 5*time.Second, "the unknown one committed by its check-back", func() bool {
		return len(messagesWithKeys(mq, "unknown-1")) == 1
	})
	if executed, checked := tx.counts(); executed != 3 || checked < 1 {
		t.Fatalf("local transactions %d (want 3), check-backs %d (want ≥ 1)", executed, checked)
	}
}

// TestSenderTriesAnotherBroker: with two broker groups, a refusal by one
// is offered to the other when a retry is allowed, and returned as an
// error, with no local transaction run, when it is not.
func TestSenderTriesAnotherBroker(t *testing.T) {
	a := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 2}, BrokerName: "broker-a",
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 2}, BrokerName: "broker-b", NoNameServer: true,
		RegisterTo: []string{a.NameServerAddr()}, TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	waitForRoute(t, a.NameServerAddr(), 2)

	tx := &scriptedTx{}
	one := newSender(t, tx, fixed(a.NameServerAddr()), halfmsg.SenderConfig{Retries: 1})
	a.FailSends(remoting.SystemBusy)
	defer a.ClearFaults()
	for i := range 6 {
		res, err := sendHalf(t, one, "commit-retry-"+string(rune('a'+i)), 2*time.Second)
		if err != nil {
			t.Fatalf("send %d with a retry: %v", i, err)
		}
		if res.MessageQueue.BrokerName != "broker-b" {
			t.Fatalf("send %d landed on %s while broker-a refuses", i, res.MessageQueue.BrokerName)
		}
	}

	none := newSender(t, tx, fixed(a.NameServerAddr()), halfmsg.SenderConfig{Retries: 0})
	refused := 0
	before, _ := tx.counts()
	for i := range 6 {
		if _, err := sendHalf(t, none, "commit-noretry-"+string(rune('a'+i)), 2*time.Second); err != nil {
			refused++
			if !strings.Contains(err.Error(), "refused: code 2") {
				t.Errorf("refusal error %v does not name the broker's code", err)
			}
		}
	}
	after, _ := tx.counts()
	if refused != 3 || after-before != 3 {
		t.Fatalf("without retries: %d of 6 refused (want the 3 sent to broker-a), %d local transactions (want 3)", refused, after-before)
	}
}

// waitForRoute waits until the NameServer's route of the topic lists n
// broker names.
func waitForRoute(t *testing.T, ns string, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, "both broker groups in the route", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := remoting.GetRouteInfo(ctx, remoting.NewPool(remoting.PoolOptions{}).To(ns), topic)
		return err == nil && len(r.QueueDatas) == n
	})
}

// TestSenderFollowsLeaderChange: after the DLedger leader moves, the old
// master refuses the send as a slave (SERVICE_NOT_AVAILABLE); the retry
// asks a fresh route and lands on the new master.
func TestSenderFollowsLeaderChange(t *testing.T) {
	mq := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, Follower: true,
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	s := newSender(t, &scriptedTx{}, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{Retries: 1, RouteTTL: time.Hour})
	if _, err := sendHalf(t, s, "commit-before", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := mq.SwitchLeader(); err != nil {
		t.Fatal(err)
	}
	res, err := sendHalf(t, s, "commit-after", 2*time.Second)
	if err != nil {
		t.Fatalf("send after the leader change: %v", err)
	}
	waitFor(t, 5*time.Second, "the message committed on the new master", func() bool {
		return len(messagesWithKeys(mq, "commit-after")) == 1
	})
	if res.Status != primitive.SendOK {
		t.Fatalf("status %v", res.Status)
	}

	// Without retries the send that meets the stale route fails, and the
	// refusal makes the next sends refresh the route rather than wait for
	// RouteTTL (an hour here).
	once := newSender(t, &scriptedTx{}, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{RouteTTL: time.Hour})
	if _, err := sendHalf(t, once, "commit-once-before", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := mq.SwitchLeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := sendHalf(t, once, "commit-once-stale", 2*time.Second); err == nil {
		t.Fatal("a send to the old master succeeded")
	}
	waitFor(t, 5*time.Second, "a send on the refreshed route", func() bool {
		_, err := sendHalf(t, once, "commit-once-after", 2*time.Second)
		return err == nil
	})
}

// TestSenderWithoutNameServer: once it has a route, the Sender keeps
// sending while every NameServer is down (as the client does on its
// cached routes); with no route and no NameServer it fails within its
// context, running no local transaction.
func TestSenderWithoutNameServer(t *testing.T) {
	mq := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4},
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	tx := &scriptedTx{}
	s := newSender(t, tx, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{RouteTTL: time.Millisecond})
	if _, err := sendHalf(t, s, "commit-warm", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	mq.StopNameServer()
	for i := range 3 {
		if _, err := sendHalf(t, s, "commit-cached-route-"+string(rune('a'+i)), 2*time.Second); err != nil {
			t.Fatalf("send %d on the cached route: %v", i, err)
		}
	}

	cold := newSender(t, tx, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{})
	before, _ := tx.counts()
	start := time.Now()
	if _, err := sendHalf(t, cold, "commit-cold", 500*time.Millisecond); err == nil {
		t.Fatal("a Sender without a route and without a NameServer sent")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refused send took %s, bound 500ms", d)
	}
	if after, _ := tx.counts(); after != before {
		t.Fatal("a local transaction ran for a half message never sent")
	}
}

// TestSenderHungBroker: a broker that takes the request and never answers
// costs a send its context's deadline, not more, and runs no local
// transaction; the error does not claim the request never left.
func TestSenderHungBroker(t *testing.T) {
	mq := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4},
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	tx := &scriptedTx{}
	s := newSender(t, tx, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{Retries: 2})
	if _, err := sendHalf(t, s, "commit-warm", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	mq.DelayResponses(time.Minute)
	defer mq.ClearFaults()
	start := time.Now()
	_, err := sendHalf(t, s, "commit-hung", 300*time.Millisecond)
	if err == nil {
		t.Fatal("a send to a hung broker succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("send to a hung broker took %s, bound 300ms", d)
	}
	if errors.Is(err, remoting.ErrNotSent) {
		t.Errorf("error %v says the request never left; it was written", err)
	}
	if executed, _ := tx.counts(); executed != 1 {
		t.Fatalf("%d local transactions, want only the warm-up's", executed)
	}
}

// TestSenderCreatesTopicThroughTemplate: a topic the NameServer does not
// know yet is sent through the template topic's brokers, which create it,
// as the client does.
func TestSenderCreatesTopicThroughTemplate(t *testing.T) {
	mq := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{"OTHER": 1},
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	s := newSender(t, &scriptedTx{}, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{})
	if _, err := sendHalf(t, s, "commit-new-topic", 2*time.Second); err != nil {
		t.Fatalf("send to a topic not created yet: %v", err)
	}
	waitFor(t, 5*time.Second, "the message published on the new topic", func() bool {
		return len(messagesWithKeys(mq, "commit-new-topic")) == 1
	})
}

// TestSenderBrokerUnreachable: a broker that went away fails the send
// on the connection it closed (written, so not "not sent"), and every
// later one at once as not sent (the connect is refused); no local
// transaction runs.
func TestSenderBrokerUnreachable(t *testing.T) {
	mq := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4},
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	tx := &scriptedTx{}
	s := newSender(t, tx, fixed(mq.NameServerAddr()), halfmsg.SenderConfig{RouteTTL: time.Hour, ConnsPerAddr: 1})
	if _, err := sendHalf(t, s, "commit-warm", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	mq.StopBroker()
	for i := range 3 {
		start := time.Now()
		_, err := sendHalf(t, s, "commit-down", 2*time.Second)
		if err == nil {
			t.Fatalf("send %d to a stopped broker succeeded", i)
		}
		if i > 0 && !errors.Is(err, remoting.ErrNotSent) {
			t.Errorf("send %d to a stopped broker: %v, want ErrNotSent", i, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("send %d to a stopped broker took %s", i, d)
		}
	}
	if executed, _ := tx.counts(); executed != 1 {
		t.Fatalf("%d local transactions, want only the warm-up's", executed)
	}
}
