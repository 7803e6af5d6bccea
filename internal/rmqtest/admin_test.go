package rmqtest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/rmqtest"
)

func TestAdminCreateListDeleteTopic(t *testing.T) {
	s := rmqtest.RunT(t, rmqtest.Options{})
	a, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{s.NameServerAddr()})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.CreateTopic(ctx, admin.WithTopicCreate("created"), admin.WithBrokerAddrCreate(s.BrokerAddr()),
		admin.WithReadQueueNums(2), admin.WithWriteQueueNums(2)); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if d := s.QueueDepths("created"); len(d) != 2 {
		t.Fatalf("created topic queues %v, want 2", d)
	}
	eventually(t, 5*time.Second, "topic listed by the name server", func() bool {
		list, err := a.FetchAllTopicList(ctx)
		return err == nil && slices.Contains(list.TopicList, "created")
	})

	// A consumer can start on it right away.
	var got received
	startConsumer(t, s, uniq(t, "cg"), "created", recordInto(&got))

	if err := a.DeleteTopic(ctx, admin.WithTopicDelete("created"), admin.WithBrokerAddrDelete(s.BrokerAddr()),
		admin.WithNameSrvAddr([]string{s.NameServerAddr()})); err != nil {
		t.Fatalf("delete topic: %v", err)
	}
	if d := s.QueueDepths("created"); d != nil {
		t.Errorf("deleted topic still has queues %v", d)
	}
}
