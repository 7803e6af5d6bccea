package rmqtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/rmqtest"
)

func TestNameServerOutage(t *testing.T) {
	const topic = "nsdown"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, RegisterInterval: 50 * time.Millisecond})
	ctx := context.Background()
	send := func(p interface {
		SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
	}, body string) error {
		res, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(body)))
		if err == nil && res.Status != primitive.SendOK {
			err = fmt.Errorf("status %v", res.Status)
		}
		return err
	}
	p1 := startProducer(t, s)
	if err := send(p1, "before"); err != nil {
		t.Fatalf("send before the outage: %v", err)
	}
	var got received
	startConsumer(t, s, uniq(t, "cg"), topic, recordInto(&got))

	s.StopNameServer()
	for i := range 10 {
		if err := send(p1, fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatalf("send %d with cached routes during the outage: %v", i, err)
		}
	}
	p2 := startProducer(t, s)
	if err := send(p2, "new producer"); err == nil {
		t.Fatal("a producer started during the outage sent without routes")
	} else {
		t.Logf("new producer during the outage: %v", err)
	}
	eventually(t, 5*time.Second, "the running consumer to get messages sent during the outage", func() bool {
		return got.count("during-9") == 1
	})

	if err := s.StartNameServer(); err != nil {
		t.Fatalf("start name server: %v", err)
	}
	eventually(t, 5*time.Second, "the producer started during the outage to send", func() bool {
		return send(p2, "after") == nil
	})
	if err := send(p1, "after-p1"); err != nil {
		t.Fatalf("old producer after the outage: %v", err)
	}
	eventually(t, 5*time.Second, "messages sent after the outage consumed", func() bool {
		return got.count("after") == 1 && got.count("after-p1") == 1
	})
}

func TestBrokerOutage(t *testing.T) {
	const topic = "brokerdown"
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 4}, RegisterInterval: 50 * time.Millisecond})
	ctx := context.Background()
	p := startProducer(t, s)
	if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte("before"))); err != nil {
		t.Fatalf("send before the outage: %v", err)
	}
	addr := s.BrokerAddr()
	before := s.QueueDepths(topic)

	s.StopBroker()
	_, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte("during")))
	if err == nil {
		t.Fatal("send succeeded while the broker was stopped")
	}
	t.Logf("send during the broker outage: %v", err)

	if err := s.StartBroker(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	if s.BrokerAddr() != addr {
		t.Fatalf("broker address changed from %s to %s", addr, s.BrokerAddr())
	}
	if got := s.QueueDepths(topic); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("queue depths after restart: got %v, want %v (state kept)", got, before)
	}
	eventually(t, 10*time.Second, "sends to recover", func() bool {
		_, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte("after")))
		return err == nil
	})
}
