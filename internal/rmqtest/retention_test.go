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
