package rmqtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/faultproxy"
	"github.com/txorder/txorder/internal/rmqtest"
)

// TestAdvertisedBrokerAddr: a broker advertising a proxy's address
// (brokerIP1) puts the proxy in every client's path: routes name it, so a
// hang of the proxy hangs sends, and healing it lets them through again.
func TestAdvertisedBrokerAddr(t *testing.T) {
	const topic = "advertised"
	proxy := faultproxy.Start(t, "broker", "127.0.0.1:1")
	s := rmqtest.RunT(t, rmqtest.Options{Topics: map[string]int{topic: 2}, BrokerAdvertiseAddr: proxy.Addr()})
	if err := proxy.SetUpstream(s.BrokerAddr()); err != nil {
		t.Fatal(err)
	}
	p := startProducer(t, s)
	res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("through the proxy")))
	if err != nil {
		t.Fatalf("send through the advertised proxy: %v", err)
	}
	if res.MessageQueue.BrokerName != "broker-a" {
		t.Fatalf("send result %+v", res)
	}
	if err := proxy.Hang(faultproxy.Both); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = p.SendSync(ctx, primitive.NewMessage(topic, []byte("hung")))
	cancel()
	if err == nil {
		t.Fatal("send succeeded while the proxy swallowed every byte: the client does not go through it")
	}
	proxy.Heal()
	eventually(t, 10*time.Second, "sends through the healed proxy", func() bool {
		_, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("after")))
		return err == nil
	})
	if got := len(s.Messages(topic)); got < 2 {
		t.Fatalf("%d messages stored, want the two sent outside the hang", got)
	}
}

func TestAdvertiseAddrMustBeIPv4(t *testing.T) {
	if _, err := rmqtest.NewServer(rmqtest.Options{BrokerAdvertiseAddr: "broker:10911"}); err == nil {
		t.Fatal("a host name was accepted as the advertised address")
	}
}
