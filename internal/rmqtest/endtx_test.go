package rmqtest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

// These tests hold rmqtest to Apache RocketMQ's END_TRANSACTION semantics
// (rocketmq-all-4.9.4 EndTransactionProcessor): a half message sent by the
// real client, whose local transaction answered UNKNOWN, is ended by a
// request on a connection of its own, as txorder's committer does.

// endTx sends END_TRANSACTION for the half message of res on its own
// connection to addr and returns the answer, or nil when none came within
// wait.
func endTx(t *testing.T, addr string, h remoting.EndTransactionHeader, wait time.Duration) *remoting.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := remoting.Dial(ctx, addr, remoting.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Invoke(ctx, remoting.NewEndTransaction(h))
	if err != nil {
		return nil
	}
	return resp
}

// headerOf builds the END_TRANSACTION header for a send result, as the
// committer does.
func headerOf(t *testing.T, group string, res *primitive.TransactionSendResult, decision int) remoting.EndTransactionHeader {
	t.Helper()
	_, off, err := remoting.DecodeMessageID(res.OffsetMsgID)
	if err != nil {
		t.Fatal(err)
	}
	return remoting.EndTransactionHeader{ProducerGroup: group, TranStateTableOffset: res.QueueOffset, CommitLogOffset: off,
		CommitOrRollback: decision, MsgID: res.MsgID, TransactionID: res.TransactionID}
}

func unknownListener() *txListener {
	return &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.UnknowState },
	}
}

func TestEndTransactionFromAnotherConnection(t *testing.T) {
	const topic = "direct"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	group := uniq(t, "txg")
	p := startTxProducer(t, s, unknownListener(), group)
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))

	res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("direct")))
	if err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send: %v %v", res, err)
	}
	if res.TransactionID != "" {
		t.Logf("transaction id %q (v2.1.2 returns it empty)", res.TransactionID)
	}
	commit := headerOf(t, group, res, remoting.TransactionCommitType)
	if resp := endTx(t, s.BrokerAddr(), commit, 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("COMMIT on a connection of its own: %v, want SUCCESS", resp)
	}
	eventually(t, 5*time.Second, "the committed message consumed", func() bool { return got.count("direct") == 1 })
	if st := s.Transactions(); st != (rmqtest.TransactionStats{Committed: 1}) {
		t.Fatalf("transactions %+v, want 1 committed", st)
	}

	// A second COMMIT (a check-back's racing the first) writes a second
	// copy, as apache/rocketmq#5574 and #8158 report.
	if resp := endTx(t, s.BrokerAddr(), commit, 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("second COMMIT: %v, want SUCCESS", resp)
	}
	eventually(t, 5*time.Second, "the duplicate consumed", func() bool { return got.count("direct") == 2 })
	// A ROLLBACK after the COMMIT is accepted and changes nothing.
	rollback := commit
	rollback.CommitOrRollback = remoting.TransactionRollbackType
	if resp := endTx(t, s.BrokerAddr(), rollback, 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("ROLLBACK after COMMIT: %v, want SUCCESS", resp)
	}
	if st := s.Transactions(); st != (rmqtest.TransactionStats{Committed: 1, ExtraCommits: 1}) {
		t.Fatalf("transactions %+v, want 1 committed with 1 extra commit", st)
	}
	if n := len(s.Messages(topic)); n != 2 {
		t.Fatalf("topic holds %d messages, want 2", n)
	}
	never(t, 200*time.Millisecond, "a third copy", func() bool { return got.count("direct") > 2 })
}

func TestEndTransactionRefusals(t *testing.T) {
	const topic = "refused"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, TransactionTimeout: time.Hour, CheckInterval: time.Hour,
		Follower: true})
	group := uniq(t, "txg")
	p := startTxProducer(t, s, unknownListener(), group)
	res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("x")))
	if err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send: %v %v", res, err)
	}
	good := headerOf(t, group, res, remoting.TransactionCommitType)
	tests := []struct {
		name   string
		addr   string
		mutate func(*remoting.EndTransactionHeader)
		ext    map[string]string // set after mutate; "" deletes
		code   int               // -1: no answer
		remark string
	}{
		{name: "another producer group", mutate: func(h *remoting.EndTransactionHeader) { h.ProducerGroup = "other" },
			code: remoting.SystemError, remark: "The producer group wrong"},
		{name: "wrong queue offset", mutate: func(h *remoting.EndTransactionHeader) { h.TranStateTableOffset++ },
			code: remoting.SystemError, remark: "The transaction state table offset wrong"},
		{name: "no half message at that offset", mutate: func(h *remoting.EndTransactionHeader) { h.CommitLogOffset += 1 << 30 },
			code: remoting.SystemError, remark: "Find prepared transaction message failed"},
		{name: "queue offset missing", ext: map[string]string{"tranStateTableOffset": ""},
			code: remoting.SystemError, remark: "java.lang.NullPointerException"},
		{name: "commit-log offset not a number", ext: map[string]string{"commitLogOffset": "12ab"},
			code: remoting.SystemError, remark: "java.lang.NullPointerException"},
		{name: "unknown decision", mutate: func(h *remoting.EndTransactionHeader) { h.CommitOrRollback = 4 },
			code: remoting.SystemError, remark: "commitOrRollback field wrong"},
		{name: "on the follower", addr: s.FollowerAddr(), code: remoting.SlaveNotAvailable},
		{name: "UNKNOWN is not answered", mutate: func(h *remoting.EndTransactionHeader) { h.CommitOrRollback = remoting.TransactionNotType },
			code: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good
			if tt.mutate != nil {
				tt.mutate(&h)
			}
			req := remoting.NewEndTransaction(h)
			for k, v := range tt.ext {
				if v == "" {
					delete(req.Ext, k)
				} else {
					req.Ext[k] = v
				}
			}
			addr := tt.addr
			if addr == "" {
				addr = s.MasterAddr()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			c, err := remoting.Dial(ctx, addr, remoting.ClientOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp, err := c.Invoke(ctx, req)
			switch {
			case tt.code == -1:
				if err == nil {
					t.Fatalf("got answer %v, want none", resp)
				}
			case err != nil:
				t.Fatalf("no answer (%v), want code %d", err, tt.code)
			case resp.Code != tt.code || resp.Remark != tt.remark:
				t.Fatalf("got %d %q, want %d %q", resp.Code, resp.Remark, tt.code, tt.remark)
			}
			if st := s.Transactions(); st != (rmqtest.TransactionStats{Pending: 1}) {
				t.Fatalf("transactions %+v, want the half message still pending", st)
			}
		})
	}
	if resp := endTx(t, s.MasterAddr(), good, 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("the right COMMIT after the refusals: %v", resp)
	}
}

// TestLeaderSwitch: the follower becomes brokerId 0 in the route, takes
// END_TRANSACTION for half messages the old master stored (they share the
// store, as a DLedger group shares its log), and the old master refuses.
func TestLeaderSwitch(t *testing.T) {
	const topic = "switch"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, TransactionTimeout: time.Hour, CheckInterval: time.Hour,
		Follower: true})
	group := uniq(t, "txg")
	p := startTxProducer(t, s, unknownListener(), group)
	res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("x")))
	if err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send: %v %v", res, err)
	}
	master := func() (map[int64]string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := remoting.Dial(ctx, s.NameServerAddr(), remoting.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r, err := remoting.GetRouteInfo(ctx, c, topic)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := r.Master(res.MessageQueue.BrokerName)
		return r.BrokerDatas[0].BrokerAddrs, m
	}
	addrs, m := master()
	if m != s.BrokerAddr() || addrs[1] != s.FollowerAddr() {
		t.Fatalf("route before the switch %v, want 0=%s 1=%s", addrs, s.BrokerAddr(), s.FollowerAddr())
	}
	if err := s.SwitchLeader(); err != nil {
		t.Fatal(err)
	}
	addrs, m = master()
	if m != s.FollowerAddr() || addrs[1] != s.BrokerAddr() || len(addrs) != 2 {
		t.Fatalf("route after the switch %v, want 0=%s 1=%s", addrs, s.FollowerAddr(), s.BrokerAddr())
	}
	h := headerOf(t, group, res, remoting.TransactionCommitType)
	if resp := endTx(t, s.BrokerAddr(), h, 3*time.Second); resp == nil || resp.Code != remoting.SlaveNotAvailable {
		t.Fatalf("COMMIT on the old master: %v, want SLAVE_NOT_AVAILABLE", resp)
	}
	if resp := endTx(t, s.FollowerAddr(), h, 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("COMMIT on the new master: %v, want SUCCESS", resp)
	}
	if n := len(s.Messages(topic)); n != 1 {
		t.Fatalf("topic holds %d messages, want 1", n)
	}
	// A send to the old master is refused as a Java slave refuses it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req := remoting.NewRequest(remoting.SendMessage, map[string]string{"producerGroup": "pg", "topic": topic, "queueId": "0",
		"properties": "UNIQ_KEY\x01K\x02"}, []byte("x"))
	resp, err := remoting.Call(ctx, s.BrokerAddr(), req)
	if err != nil || resp.Code != remoting.ServiceNotAvailable {
		t.Fatalf("send to the old master: %v %v, want SERVICE_NOT_AVAILABLE", resp, err)
	}
}

// TestCheckAfterCommitWritesDuplicate: a check that reaches the producer
// after the transaction was committed on another connection (the check
// service's race) is answered COMMIT and writes a second copy.
func TestCheckAfterCommitWritesDuplicate(t *testing.T) {
	const topic = "recheck"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	group := uniq(t, "txg")
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.CommitMessageState },
	}
	p := startTxProducer(t, s, l, group)
	msg := primitive.NewMessage(topic, []byte("twice"))
	msg.WithKeys([]string{"order-1"})
	res, err := p.SendMessageInTransaction(context.Background(), msg)
	if err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send: %v %v", res, err)
	}
	if resp := endTx(t, s.BrokerAddr(), headerOf(t, group, res, remoting.TransactionCommitType), 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("COMMIT: %v", resp)
	}
	if !s.CheckHalf("order-1") {
		t.Fatal("no check sent for order-1")
	}
	eventually(t, 5*time.Second, "the producer's answer to the late check", func() bool { return len(s.Messages(topic)) == 2 })
	if st := s.Transactions(); st.ExtraCommits != 1 || st.Committed != 1 {
		t.Fatalf("transactions %+v, want 1 committed with 1 extra commit", st)
	}
	for i, m := range s.Messages(topic) {
		if m.Keys != "order-1" || string(m.Body) != "twice" {
			t.Errorf("copy %d: keys %q body %q", i, m.Keys, m.Body)
		}
	}
	// The committer's connection is not a producer's: checks never go there.
	if n := l.checks.Load(); n != 1 {
		t.Fatalf("%d checks answered, want 1", n)
	}
}

// TestEndTransactionNamesACopy: each check re-puts the half message and
// names the copy, as Java does. A COMMIT with the original's coordinates
// after a check writes the message but ends only that copy: the live copy
// is checked again, and a COMMIT answer writes a second message. A COMMIT
// with the live copy's coordinates ends the transaction.
func TestEndTransactionNamesACopy(t *testing.T) {
	const topic = "copies"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, TransactionTimeout: time.Millisecond, CheckInterval: time.Hour})
	group := uniq(t, "txg")
	var answer atomic.Int32 // primitive.LocalTransactionState for checks
	answer.Store(int32(primitive.UnknowState))
	l := &txListener{
		exec: func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState {
			return primitive.LocalTransactionState(answer.Load())
		},
	}
	p := startTxProducer(t, s, l, group)
	checkOnce := func() {
		t.Helper()
		before := l.checks.Load()
		s.CheckNow()
		eventually(t, 5*time.Second, "the check answered", func() bool { return l.checks.Load() > before })
	}
	send := func(body string) *primitive.TransactionSendResult {
		t.Helper()
		res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte(body)))
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send: %v %v", res, err)
		}
		eventually(t, time.Second, "older than the transaction timeout", func() bool {
			for _, h := range s.PendingHalfMessages() {
				if h.MsgID == res.MsgID {
					return time.Since(h.BornTimestamp) > 5*time.Millisecond
				}
			}
			return false
		})
		return res
	}

	// The original's coordinates after one check.
	first := send("original")
	checkOnce() // UNKNOWN: the copy is live now
	if resp := endTx(t, s.BrokerAddr(), headerOf(t, group, first, remoting.TransactionCommitType), 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("COMMIT on the original: %v", resp)
	}
	if n, st := len(s.Messages(topic)), s.Transactions(); n != 1 || st.Pending != 1 {
		t.Fatalf("after COMMIT on the original: %d messages, %+v; want the message written and the live copy still pending", n, st)
	}
	answer.Store(int32(primitive.CommitMessageState))
	checkOnce()
	eventually(t, 5*time.Second, "the check's COMMIT applied", func() bool { return s.Transactions().Pending == 0 })
	if n, st := len(s.Messages(topic)), s.Transactions(); n != 2 || st != (rmqtest.TransactionStats{Committed: 1, ExtraCommits: 1}) {
		t.Fatalf("after the check's COMMIT: %d messages, %+v; want a second copy", n, st)
	}

	// The live copy's coordinates after one check.
	answer.Store(int32(primitive.UnknowState))
	second := send("live")
	checkOnce()
	live := s.PendingHalfMessages()
	if len(live) != 1 || live[0].MsgID != second.MsgID || live[0].QueueOffset == second.QueueOffset {
		t.Fatalf("pending %+v, want the live copy of %s at a new queue offset", live, second.MsgID)
	}
	h := remoting.EndTransactionHeader{ProducerGroup: group, TranStateTableOffset: live[0].QueueOffset,
		CommitLogOffset: live[0].CommitLogOffset, CommitOrRollback: remoting.TransactionCommitType, MsgID: second.MsgID}
	if resp := endTx(t, s.BrokerAddr(), h, 3*time.Second); resp == nil || resp.Code != remoting.Success {
		t.Fatalf("COMMIT on the live copy: %v", resp)
	}
	checks := l.checks.Load()
	s.CheckNow()
	never(t, 200*time.Millisecond, "a check after the live copy was committed", func() bool { return l.checks.Load() != checks })
	if n, st := len(s.Messages(topic)), s.Transactions(); n != 3 || st != (rmqtest.TransactionStats{Committed: 2, ExtraCommits: 1}) {
		t.Fatalf("after COMMIT on the live copy: %d messages, %+v; want one more message and no other change", n, st)
	}
}
