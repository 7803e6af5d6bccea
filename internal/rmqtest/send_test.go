package rmqtest_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/rmqtest"
)

func TestSendVariants(t *testing.T) {
	const topic = "variants"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, DelayScale: 0.01})
	p := startProducer(t, s)
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))
	ctx := context.Background()

	t.Run("sync with properties", func(t *testing.T) {
		msg := primitive.NewMessage(topic, []byte("sync")).WithTag("tagA").WithKeys([]string{"k1", "k2"})
		msg.WithProperty("order_id", "42")
		res, err := p.SendSync(ctx, msg)
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send: %v %v", res, err)
		}
		if len(res.OffsetMsgID) != 32 {
			t.Errorf("offset msg id %q, want 32 hex chars", res.OffsetMsgID)
		}
		eventually(t, 5*time.Second, "consumed", func() bool { return got.count("sync") == 1 })
		for _, m := range got.all() {
			if string(m.Body) != "sync" {
				continue
			}
			if m.GetTags() != "tagA" || m.GetKeys() != "k1 k2" || m.GetProperty("order_id") != "42" ||
				m.MsgId != res.MsgID || m.OffsetMsgId != res.OffsetMsgID || m.StoreHost != s.BrokerAddr() {
				t.Errorf("consumed message %+v does not match send result %+v", m, res)
			}
		}
	})

	t.Run("async", func(t *testing.T) {
		done := make(chan error, 1)
		err := p.SendAsync(ctx, func(_ context.Context, res *primitive.SendResult, err error) {
			if err == nil && res.Status != primitive.SendOK {
				err = context.Canceled
			}
			done <- err
		}, primitive.NewMessage(topic, []byte("async")))
		if err != nil {
			t.Fatalf("send async: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("async result: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no async result")
		}
		eventually(t, 5*time.Second, "consumed", func() bool { return got.count("async") == 1 })
	})

	t.Run("oneway", func(t *testing.T) {
		if err := p.SendOneWay(ctx, primitive.NewMessage(topic, []byte("oneway"))); err != nil {
			t.Fatalf("send oneway: %v", err)
		}
		eventually(t, 5*time.Second, "consumed", func() bool { return got.count("oneway") == 1 })
	})

	t.Run("batch", func(t *testing.T) {
		res, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte("b1")), primitive.NewMessage(topic, []byte("b2")),
			primitive.NewMessage(topic, []byte("b3")))
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send batch: %v %v", res, err)
		}
		if ids := strings.Split(res.OffsetMsgID, ","); len(ids) != 3 {
			t.Errorf("batch offset ids %q, want 3", res.OffsetMsgID)
		}
		eventually(t, 5*time.Second, "batch consumed", func() bool {
			return got.count("b1") == 1 && got.count("b2") == 1 && got.count("b3") == 1
		})
	})

	t.Run("compressed body", func(t *testing.T) {
		big := bytes.Repeat([]byte("compress me "), 1000)
		if _, err := p.SendSync(ctx, primitive.NewMessage(topic, big)); err != nil {
			t.Fatalf("send: %v", err)
		}
		eventually(t, 5*time.Second, "consumed and inflated", func() bool { return got.count(string(big)) == 1 })
		found := false
		for _, m := range s.Messages(topic) {
			if bytes.Equal(m.Body, big) {
				found = true
				if m.SysFlag&1 == 0 {
					t.Errorf("stored sysFlag %d, want the compressed bit kept", m.SysFlag)
				}
			}
		}
		if !found {
			t.Error("Messages does not show the inflated body")
		}
	})

	t.Run("delayed", func(t *testing.T) {
		level := 4 // 30s scaled by 0.01 = 300ms
		sent := time.Now()
		msg := primitive.NewMessage(topic, []byte("delayed"))
		msg.WithDelayTimeLevel(level)
		if _, err := p.SendSync(ctx, msg); err != nil {
			t.Fatalf("send: %v", err)
		}
		eventually(t, 5*time.Second, "delayed message consumed", func() bool { return got.count("delayed") == 1 })
		if d := time.Since(sent); d < s.DelayLevel(level) {
			t.Errorf("delayed message consumed after %v, want >= %v", d, s.DelayLevel(level))
		}
		for _, m := range got.all() {
			if string(m.Body) == "delayed" && m.GetProperty("DELAY") != "" {
				t.Errorf("delivered message keeps DELAY=%s", m.GetProperty("DELAY"))
			}
		}
	})

	t.Run("auto-create through TBW102", func(t *testing.T) {
		res, err := p.SendSync(ctx, primitive.NewMessage("brand-new", []byte("new")))
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send to a new topic: %v %v", res, err)
		}
		if d := s.QueueDepths("brand-new"); len(d) != 4 {
			t.Errorf("auto-created topic queues %v, want 4", d)
		}
	})
}

func TestFaultInjection(t *testing.T) {
	const topic = "faults"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}})
	p := startProducer(t, s)
	ctx := context.Background()
	msg := func() *primitive.Message { return primitive.NewMessage(topic, []byte("x")) }

	s.FailNextSends(1, 2) // SYSTEM_BUSY is not retried by the client
	if _, err := p.SendSync(ctx, msg()); err == nil || !strings.Contains(err.Error(), "CODE: 2") {
		t.Errorf("first send: got %v, want an error with CODE: 2", err)
	}
	if _, err := p.SendSync(ctx, msg()); err != nil {
		t.Errorf("second send: %v", err)
	}

	s.FailNextSends(2, 1) // SYSTEM_ERROR is retried: the third attempt succeeds
	if _, err := p.SendSync(ctx, msg()); err != nil {
		t.Errorf("send with 2 retried failures: %v", err)
	}

	s.FailSends(14)
	for range 3 {
		if _, err := p.SendSync(ctx, msg()); err == nil {
			t.Error("send succeeded while every send fails")
		}
	}
	s.ClearFaults()
	if _, err := p.SendSync(ctx, msg()); err != nil {
		t.Errorf("send after ClearFaults: %v", err)
	}

	s.DelayResponses(200 * time.Millisecond)
	start := time.Now()
	if _, err := p.SendSync(ctx, msg()); err != nil {
		t.Errorf("delayed send: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("delayed send took %v, want >= 200ms", d)
	}
	s.ClearFaults()

	if n := s.DropConnections(); n == 0 {
		t.Error("no connection dropped")
	}
	eventually(t, 5*time.Second, "send after a dropped connection", func() bool {
		_, err := p.SendSync(ctx, msg())
		return err == nil
	})
}
