package rmqtest_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/txorder/txorder/internal/rmqtest"
)

func TestPushConsumerGetsAllQueues(t *testing.T) {
	const topic, n = "events", 40
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}})
	p := startProducer(t, s)
	ctx := context.Background()
	for i := range n {
		if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(strconv.Itoa(i)))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for q, d := range s.QueueDepths(topic) {
		if d != n/4 {
			t.Errorf("queue %d depth: got %d, want %d", q, d, n/4)
		}
	}
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))
	eventually(t, 5*time.Second, "all messages consumed", func() bool { return got.len() >= n })
	queues := map[int]int{}
	for i := range n {
		if c := got.count(strconv.Itoa(i)); c != 1 {
			t.Errorf("message %d consumed %d times, want 1", i, c)
		}
	}
	for _, m := range got.all() {
		queues[m.Queue.QueueId]++
	}
	if len(queues) != 4 {
		t.Errorf("messages came from queues %v, want all 4", queues)
	}
}

// queuesOf returns the distinct queue ids of the received messages whose
// body is in bodies.
func queuesOf(r *received, bodies map[string]bool) []int {
	set := map[int]bool{}
	for _, m := range r.all() {
		if bodies[string(m.Body)] {
			set[m.Queue.QueueId] = true
		}
	}
	out := make([]int, 0, len(set))
	for q := range set {
		out = append(out, q)
	}
	sort.Ints(out)
	return out
}

func TestTwoConsumersSplitQueuesAndConvergeWhenOneLeaves(t *testing.T) {
	const topic = "split"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}})
	p := startProducer(t, s)
	group := uniq(t, "cg")
	var r1, r2 received
	startConsumer(t, s, group, topic, recordInto(&r1))
	c2 := newConsumer(t, s, group, topic, recordInto(&r2))
	if err := c2.Start(); err != nil {
		t.Fatalf("start second consumer: %v", err)
	}
	eventually(t, 5*time.Second, "two members in the group", func() bool { return len(s.ConsumerIDs(group)) == 2 })

	ctx := context.Background()
	round := 0
	// sendRound sends one message to each queue and returns their bodies.
	sendRound := func() map[string]bool {
		round++
		bodies := map[string]bool{}
		for q := range 4 {
			body := fmt.Sprintf("r%d-q%d", round, q)
			bodies[body] = true
			msg := primitive.NewMessage(topic, []byte(body))
			msg.WithShardingKey(strconv.Itoa(q))
			if _, err := p.SendSync(ctx, msg); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		return bodies
	}
	delivered := func(bodies map[string]bool) bool {
		n := 0
		for b := range bodies {
			n += r1.count(b) + r2.count(b)
		}
		return n >= len(bodies)
	}
	eventually(t, 5*time.Second, "the two consumers to split the 4 queues 2/2", func() bool {
		bodies := sendRound()
		eventually(t, 5*time.Second, "round delivered", func() bool { return delivered(bodies) })
		q1, q2 := queuesOf(&r1, bodies), queuesOf(&r2, bodies)
		return len(q1) == 2 && len(q2) == 2
	})

	if err := c2.Shutdown(); err != nil {
		t.Fatalf("shutdown second consumer: %v", err)
	}
	left := time.Now()
	eventually(t, time.Second, "the remaining consumer to own all 4 queues", func() bool {
		bodies := sendRound()
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) && len(queuesOf(&r1, bodies)) < 4 {
			time.Sleep(5 * time.Millisecond)
		}
		return len(queuesOf(&r1, bodies)) == 4
	})
	t.Logf("converged %v after the second consumer left", time.Since(left).Round(time.Millisecond))
}

// TestOffsetsPersistAcrossConsumerRestart restarts a consumer group: the
// new member starts exactly at the offsets the old one committed. The Go
// client updates its offset table just after the consume callback returns,
// so a shutdown right after the last callback may commit a little less
// than was consumed; those few messages come again ("replay the client
// itself causes") and nothing else does.
func TestOffsetsPersistAcrossConsumerRestart(t *testing.T) {
	const topic, n = "persist", 20
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}})
	p := startProducer(t, s)
	group := uniq(t, "cg")
	ctx := context.Background()
	send := func(prefix string) {
		for i := range n {
			if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(fmt.Sprintf("%s-%d", prefix, i)))); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}
	send("first")
	var r1 received
	c1 := newConsumer(t, s, group, topic, recordInto(&r1))
	if err := c1.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	eventually(t, 5*time.Second, "first batch consumed", func() bool { return r1.len() >= n })
	if err := c1.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The server drops a member once everything read from its connection
	// is handled: the offsets are final then.
	eventually(t, 5*time.Second, "the consumer gone from the group", func() bool { return len(s.ConsumerIDs(group)) == 0 })
	committed := make([]int64, 4)
	var sum int64
	for q := range committed {
		committed[q], _ = s.ConsumerOffset(group, topic, q)
		sum += committed[q]
	}
	t.Logf("committed offsets %v (%d of %d consumed)", committed, sum, n)

	send("second")
	var r2 received
	startConsumer(t, s, group, topic, recordInto(&r2))
	eventually(t, 5*time.Second, "second batch consumed", func() bool {
		for i := range n {
			if r2.count(fmt.Sprintf("second-%d", i)) == 0 {
				return false
			}
		}
		return true
	})
	replay := int64(n) - sum
	never(t, 200*time.Millisecond, "more messages than the second batch and the uncommitted tail", func() bool {
		return int64(r2.len()) > int64(n)+replay
	})
	for _, m := range r2.all() {
		if b := string(m.Body); strings.HasPrefix(b, "first") && m.QueueOffset < committed[m.Queue.QueueId] {
			t.Errorf("restarted consumer got %s at queue %d offset %d, below the committed offset %d",
				b, m.Queue.QueueId, m.QueueOffset, committed[m.Queue.QueueId])
		}
	}
	if got := int64(r2.len()); got != int64(n)+replay {
		t.Errorf("restarted consumer got %d messages, want %d new + %d uncommitted", got, n, replay)
	}
}

func TestRetryLaterThenDLQ(t *testing.T) {
	const topic, maxRetries = "retry", 3
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, DelayScale: 0.001})
	p := startProducer(t, s)
	group := uniq(t, "cg")
	var mu sync.Mutex
	var times []int32
	startConsumer(t, s, group, topic, func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			times = append(times, m.ReconsumeTimes)
			if m.Topic != topic {
				t.Errorf("retried message topic %q, want %q restored from RETRY_TOPIC", m.Topic, topic)
			}
		}
		return consumer.ConsumeRetryLater, nil
	}, consumer.WithMaxReconsumeTimes(maxRetries))

	res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("poison")))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	dlq := rmqtest.DLQPrefix + group
	eventually(t, 10*time.Second, "message in "+dlq, func() bool { return len(s.Messages(dlq)) == 1 })
	mu.Lock()
	got := append([]int32(nil), times...)
	mu.Unlock()
	want := []int32{0, 1, 2, 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reconsume times seen by the consumer: got %v, want %v", got, want)
	}
	m := s.Messages(dlq)[0]
	if m.MsgID != res.MsgID || string(m.Body) != "poison" {
		t.Errorf("DLQ message: got id %s body %q, want id %s body poison", m.MsgID, m.Body, res.MsgID)
	}
	if m.Properties["RETRY_TOPIC"] != topic || m.Properties["ORIGIN_MESSAGE_ID"] != res.OffsetMsgID {
		t.Errorf("DLQ properties: got %v, want RETRY_TOPIC=%s ORIGIN_MESSAGE_ID=%s", m.Properties, topic, res.OffsetMsgID)
	}
	if n := len(s.Messages(rmqtest.RetryPrefix + group)); n != maxRetries {
		t.Errorf("retry topic holds %d messages, want %d", n, maxRetries)
	}
}

func TestOrderlyConsumerKeepsQueueOrder(t *testing.T) {
	const topic, perQueue = "ordered", 25
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}})
	p := startProducer(t, s, producer.WithQueueSelector(producer.NewHashQueueSelector()))
	ctx := context.Background()
	for i := range perQueue {
		for key := range 4 {
			msg := primitive.NewMessage(topic, []byte(fmt.Sprintf("%d:%d", key, i)))
			msg.WithShardingKey("key" + strconv.Itoa(key))
			if _, err := p.SendSync(ctx, msg); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got), consumer.WithConsumerOrder(true))
	t0 := time.Now()
	eventually(t, 10*time.Second, "all messages consumed", func() bool { return got.len() >= 4*perQueue })
	t.Logf("consumed in %v", time.Since(t0))
	last := map[int]int64{}
	seq := map[string]int{}
	for _, m := range got.all() {
		q := m.Queue.QueueId
		if prev, ok := last[q]; ok && m.QueueOffset <= prev {
			t.Fatalf("queue %d: offset %d after %d", q, m.QueueOffset, prev)
		}
		last[q] = m.QueueOffset
		var key, i int
		fmt.Sscanf(string(m.Body), "%d:%d", &key, &i)
		k := strconv.Itoa(key)
		if i != seq[k] {
			t.Fatalf("key %d: got message %d, want %d", key, i, seq[k])
		}
		seq[k]++
	}
}

// TestNewGroupStartOffset shows the offset policy for a brand-new group
// with CONSUME_FROM_LAST_OFFSET: Java's (read the queue from 0 while it
// still starts at 0) by default, the end of the queue with
// StrictConsumerOffset.
func TestNewGroupStartOffset(t *testing.T) {
	tests := []struct {
		name      string
		strict    bool
		wantOlder bool
	}{
		{"java default reads history", false, true},
		{"strict starts at the end", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const topic = "startoffset"
			s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, StrictConsumerOffset: tt.strict})
			p := startProducer(t, s)
			ctx := context.Background()
			for i := range 8 {
				if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(fmt.Sprintf("old-%d", i)))); err != nil {
					t.Fatal(err)
				}
			}
			group := uniq(t, "cg")
			var got received
			startConsumer(t, s, group, topic, recordInto(&got), consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset))
			// Messages sent before the group is positioned may be skipped
			// in strict mode: send until one arrives.
			round := 0
			eventually(t, 10*time.Second, "a new message consumed", func() bool {
				round++
				if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(fmt.Sprintf("new-%d", round)))); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(200 * time.Millisecond)
				for time.Now().Before(deadline) && got.count(fmt.Sprintf("new-%d", round)) == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				return got.count(fmt.Sprintf("new-%d", round)) == 1
			})
			if tt.wantOlder {
				// The old messages are spread over four queues, each read
				// on its own: wait for every one, not the last sent.
				eventually(t, 5*time.Second, "the older messages consumed", func() bool {
					for i := range 8 {
						if got.count(fmt.Sprintf("old-%d", i)) != 1 {
							return false
						}
					}
					return true
				})
			}
			if older := got.count("old-0") == 1; older != tt.wantOlder {
				t.Errorf("consumed older messages: got %v, want %v (%d messages)", older, tt.wantOlder, got.len())
			}
		})
	}
}
