package rmqtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

func TestMaxQueueMessagesForgetsTheOldest(t *testing.T) {
	const topic = "retained"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 1}, MaxQueueMessages: 5})
	var first rmqtest.Message
	for i := range 12 {
		m, err := s.Publish(topic, 0, []byte(fmt.Sprint(i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = m
		}
	}
	if d := s.QueueDepths(topic); len(d) != 1 || d[0] != 12 {
		t.Fatalf("depths %v, want [12]", d)
	}
	msgs := s.Messages(topic)
	if len(msgs) != 5 || msgs[0].QueueOffset != 7 || string(msgs[0].Body) != "7" {
		t.Fatalf("retained %d messages from offset %d, want 5 from 7", len(msgs), msgs[0].QueueOffset)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := remoting.Dial(ctx, s.BrokerAddr(), remoting.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func(code int, ext map[string]string) *remoting.Command {
		t.Helper()
		resp, err := c.Invoke(ctx, remoting.NewRequest(code, ext, nil))
		if err != nil {
			t.Fatalf("request %d: %v", code, err)
		}
		return resp
	}
	pull := func(offset int) *remoting.Command {
		return call(remoting.PullMessage, map[string]string{"consumerGroup": "g", "topic": topic, "queueId": "0",
			"queueOffset": fmt.Sprint(offset), "maxMsgNums": "32", "sysFlag": "0"})
	}
	if r := pull(0); r.Code != remoting.PullOffsetMoved || r.Ext["nextBeginOffset"] != "7" || r.Ext["minOffset"] != "7" {
		t.Errorf("pull below the min offset: got %d %v, want 21 with nextBeginOffset=7 minOffset=7", r.Code, r.Ext)
	}
	if r := pull(7); r.Code != remoting.Success || r.Ext["nextBeginOffset"] != "12" {
		t.Errorf("pull at the min offset: got %d %v, want 0 with nextBeginOffset=12", r.Code, r.Ext)
	}
	if r := call(remoting.GetMinOffset, map[string]string{"topic": topic, "queueId": "0"}); r.Ext["offset"] != "7" {
		t.Errorf("GET_MIN_OFFSET: got %v, want 7", r.Ext)
	}
	if r := call(remoting.QueryConsumerOffset, map[string]string{"consumerGroup": "new", "topic": topic, "queueId": "0"}); r.Code != remoting.QueryNotFound {
		t.Errorf("QUERY_CONSUMER_OFFSET of a new group once the queue moved on: got %d, want 22", r.Code)
	}
	r := call(remoting.ConsumerSendMsgBack, map[string]string{"group": "g", "offset": fmt.Sprint(first.CommitLogOffset),
		"delayLevel": "0", "originMsgId": first.MsgID, "originTopic": topic, "maxReconsumeTimes": "16"})
	if r.Code != remoting.SystemError {
		t.Errorf("send-back of a forgotten message: got %d, want 1", r.Code)
	}
}

func TestRetentionForgetsOnlyFinishedTransactions(t *testing.T) {
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{"tx": 1}, MaxQueueMessages: 2,
		TransactionTimeout: time.Hour, CheckInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := remoting.Dial(ctx, s.BrokerAddr(), remoting.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	half := func(i int) (commitLogOffset, queueOffset int64) {
		t.Helper()
		req := remoting.NewRequest(remoting.SendMessage, map[string]string{"producerGroup": "pg", "topic": "tx", "queueId": "0",
			"sysFlag": "4", "properties": fmt.Sprintf("UNIQ_KEY\x01K%d\x02TRAN_MSG\x01true\x02PGROUP\x01pg\x02", i)}, []byte("x"))
		resp, err := c.Invoke(ctx, req)
		if err != nil || resp.Code != remoting.Success {
			t.Fatalf("half %d: %v %v", i, resp, err)
		}
		_, off, err := remoting.DecodeMessageID(resp.Ext["msgId"])
		if err != nil {
			t.Fatal(err)
		}
		return off, resp.ExtInt64("queueOffset", -1)
	}
	end := func(off, qoff int64, i, decision int) {
		t.Helper()
		req := remoting.NewRequest(remoting.EndTransaction, map[string]string{"producerGroup": "pg", "commitLogOffset": fmt.Sprint(off),
			"tranStateTableOffset": fmt.Sprint(qoff), "commitOrRollback": fmt.Sprint(decision), "msgId": fmt.Sprintf("K%d", i),
			"fromTransactionCheck": "false"}, nil)
		req.Language = "JAVA" // Go clients get no reply to END_TRANSACTION
		if resp, err := c.Invoke(ctx, req); err != nil || resp.Code != remoting.Success {
			t.Fatalf("end %d: %v %v", i, resp, err)
		}
	}
	open, openQ := half(0)
	for i := 1; i <= 4; i++ {
		off, qoff := half(i)
		end(off, qoff, i, 8)
	}
	st := s.Transactions()
	if st.Pending != 1 || st.Committed > 2 {
		t.Errorf("transactions %+v: want the open one kept and old finished ones forgotten", st)
	}
	end(open, openQ, 0, 12) // the open transaction is still known
	if st := s.Transactions(); st.Pending != 0 || st.RolledBack != 1 {
		t.Errorf("transactions %+v, want the open one rolled back", st)
	}
}
