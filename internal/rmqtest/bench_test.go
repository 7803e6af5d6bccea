package rmqtest_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/remoting"
	"github.com/txorder/txorder/internal/rmqtest"
)

const benchProducers = 8

// sendParallel sends n 1 KiB messages with benchProducers producers, each
// sending synchronously in its own goroutine.
func sendParallel(b *testing.B, s *rmqtest.Server, topic string, n int) {
	b.Helper()
	producers := make([]interface {
		SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
	}, benchProducers)
	for i := range producers {
		producers[i] = startProducer(b, s)
		// Warm up routes and connections outside the timer.
		if _, err := producers[i].SendSync(context.Background(), primitive.NewMessage(topic, []byte("warm-up"))); err != nil {
			b.Fatalf("warm-up send: %v", err)
		}
	}
	body := bytes.Repeat([]byte("x"), 1024)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body))
				if err != nil || res.Status != primitive.SendOK {
					b.Errorf("send: %v %v", res, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkSendSync8Producers1KiB(b *testing.B) {
	const topic = "bench-send"
	s := rmqtest.RunT(b, rmqtest.Options{Topics: map[string]int{topic: 8}})
	sendParallel(b, s, topic, b.N)
}

func BenchmarkSendAndConsume(b *testing.B) {
	const topic = "bench-consume"
	s := rmqtest.RunT(b, rmqtest.Options{Topics: map[string]int{topic: 8}})
	var consumed atomic.Int64
	startConsumer(b, s, uniq(b, "cg"), topic, func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		consumed.Add(int64(len(ms)))
		return consumer.ConsumeSuccess, nil
	})
	start := time.Now()
	sendParallel(b, s, topic, b.N)
	want := int64(b.N + benchProducers) // plus the warm-up messages
	deadline := time.Now().Add(time.Minute)
	for consumed.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("consumed %d of %d", consumed.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "consumed/s")
}

// BenchmarkCheckBack measures transaction check round trips: CHECK out to
// the real transaction producer, its CheckLocalTransaction, END_TRANSACTION
// back, the message committed.
func BenchmarkCheckBack(b *testing.B) {
	const topic = "bench-check"
	s := rmqtest.RunT(b, rmqtest.Options{
		Topics:             map[string]int{topic: 4},
		TransactionTimeout: time.Millisecond,
		CheckInterval:      time.Hour,
	})
	l := &txListener{
		exec:  func(*primitive.Message) primitive.LocalTransactionState { return primitive.UnknowState },
		check: func(*primitive.MessageExt) primitive.LocalTransactionState { return primitive.CommitMessageState },
	}
	p := startTxProducer(b, s, l, uniq(b, "txg"))
	for range b.N {
		if _, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("check me"))); err != nil {
			b.Fatalf("send half: %v", err)
		}
	}
	// A round checks only halves older than TransactionTimeout (1ms).
	for lastSent := time.Now(); time.Since(lastSent) <= 2*time.Millisecond; {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	start := time.Now()
	s.CheckNow()
	deadline := time.Now().Add(time.Minute)
	for s.Transactions().Committed < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("committed %d of %d", s.Transactions().Committed, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
}

// BenchmarkServerSendRaw measures the server alone: 8 connections sending
// SEND_MESSAGE with 1 KiB bodies through the light remoting client, one
// request in flight per connection, as a sync producer does.
func BenchmarkServerSendRaw(b *testing.B) {
	const topic = "bench-raw"
	s := rmqtest.RunT(b, rmqtest.Options{Topics: map[string]int{topic: 8}})
	body := bytes.Repeat([]byte("x"), 1024)
	clients := make([]*remoting.Client, benchProducers)
	for i := range clients {
		c, err := remoting.Dial(context.Background(), s.BrokerAddr(), remoting.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		clients[i] = c
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				req := remoting.NewRequest(remoting.SendMessage, map[string]string{
					"producerGroup": "pg", "topic": topic, "queueId": strconv.Itoa(i), "sysFlag": "0",
					"bornTimestamp": "1795253638763", "flag": "0", "reconsumeTimes": "0", "unitMode": "false",
					"properties":        "UNIQ_KEY\x01C0A80001000000000000000000" + fmt.Sprintf("%06X", n) + "\x02TAGS\x01t\x02",
					"maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
				}, body)
				resp, err := c.Invoke(context.Background(), req)
				if err != nil || resp.Code != remoting.Success {
					b.Errorf("send: %v %v", resp, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
