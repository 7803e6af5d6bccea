package halfmsg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/remoting"
)

// sendRoute is the topic's route: the master of each broker name, and the
// writable queues of those that have one.
type sendRoute struct {
	queues  []primitive.MessageQueue
	masters map[string]string // broker name → master address
	at      time.Time         // zero: expired
}

// topicRoutes keeps the topic's route from the NameServers, for the
// Sender (which queue, which master) and the Committer (which master).
// Within ttl the cached route is used; past it, or expired by a refusal
// or failed call, it is asked again — in the background, the cached one
// serving meanwhile, when background is set (the placement's hot path);
// else at once. When no NameServer answers, the cached route serves and
// get says it is stale: a NameServer outage stops neither the producer
// nor these (a stale master costs at most a refusal or a failed call).
type topicRoutes struct {
	pool        *remoting.Pool
	nameServers func() []string
	topic       string
	ttl         time.Duration // 0: ask at every get
	background  bool
	now         func() time.Time
	nsNext      atomic.Uint32

	mu         sync.Mutex
	cur        *sendRoute
	refreshing bool
}

func newTopicRoutes(pool *remoting.Pool, nameServers func() []string, topic string, ttl time.Duration,
	background bool, now func() time.Time) *topicRoutes {
	return &topicRoutes{pool: pool, nameServers: nameServers, topic: topic, ttl: ttl, background: background, now: now}
}

// get returns the route, asked now when there is none or fresh is set.
// stale reports the cached route served because no NameServer answered.
func (t *topicRoutes) get(ctx context.Context, fresh bool) (r *sendRoute, stale bool, err error) {
	t.mu.Lock()
	r = t.cur
	due := r == nil || fresh || t.now().Sub(r.at) >= t.ttl
	if due && r != nil && !fresh && t.background {
		if !t.refreshing {
			t.refreshing = true
			go func() {
				rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, _ = t.fetch(rctx)
				t.mu.Lock()
				t.refreshing = false
				t.mu.Unlock()
			}()
		}
		due = false
	}
	t.mu.Unlock()
	if !due {
		return r, false, nil
	}
	nr, err := t.fetch(ctx)
	switch {
	case err == nil:
		return nr, false, nil
	case r != nil:
		return r, true, nil
	}
	return nil, false, err
}

// expire makes the next get ask again, if r is still the current route.
func (t *topicRoutes) expire(r *sendRoute) {
	t.mu.Lock()
	if r != nil && t.cur == r {
		t.cur = &sendRoute{queues: r.queues, masters: r.masters}
	}
	t.mu.Unlock()
}

// fetch asks the NameServers, starting with a different one each time,
// and keeps the first answer.
func (t *topicRoutes) fetch(ctx context.Context) (*sendRoute, error) {
	nameServers, start := t.nameServers(), int(t.nsNext.Add(1))
	tr, err := routeFromAny(ctx, t.pool, nameServers, start, t.topic)
	queueCap := -1
	if errors.Is(err, remoting.ErrTopicNotExist) {
		// Not created yet: send through the brokers that may create it
		// (the template topic's route, at most 4 queues each), as the
		// client does (rocketmq-client-go v2.1.2 producer/producer.go:571-575,
		// internal/route.go:123-160); the next refresh finds it.
		tr, err = routeFromAny(ctx, t.pool, nameServers, start, defaultTopicKey)
		queueCap = 4
	}
	if err != nil {
		return nil, err
	}
	r := &sendRoute{masters: map[string]string{}, at: t.now()}
	for _, qd := range tr.QueueDatas {
		addr, ok := tr.Master(qd.BrokerName)
		if !ok {
			continue
		}
		r.masters[qd.BrokerName] = addr
		if qd.Perm&permWrite == 0 {
			continue
		}
		n := qd.WriteQueueNums
		if queueCap >= 0 {
			n = min(qd.ReadQueueNums, queueCap)
		}
		for i := range n {
			r.queues = append(r.queues, primitive.MessageQueue{Topic: t.topic, BrokerName: qd.BrokerName, QueueId: i})
		}
	}
	t.mu.Lock()
	t.cur = r
	t.mu.Unlock()
	return r, nil
}

// pick returns the n-th queue round-robin, skipping queues of avoid while
// another broker has one.
func (r *sendRoute) pick(n int, avoid string) (primitive.MessageQueue, bool) {
	if len(r.queues) == 0 {
		return primitive.MessageQueue{}, false
	}
	for i := range r.queues {
		q := r.queues[(n+i)%len(r.queues)]
		if q.BrokerName != avoid {
			return q, true
		}
	}
	return r.queues[n%len(r.queues)], true
}

// routeFromAny asks the NameServers for topic's route, starting with the
// start-th, and returns the first answer.
func routeFromAny(ctx context.Context, pool *remoting.Pool, nameServers []string, start int, topic string) (remoting.TopicRoute, error) {
	if len(nameServers) == 0 {
		return remoting.TopicRoute{}, errors.New("no NameServer address")
	}
	var errs []error
	for i := range nameServers {
		ns := nameServers[(start+i)%len(nameServers)]
		r, err := remoting.GetRouteInfo(ctx, pool.To(ns), topic)
		if err == nil {
			return r, nil
		}
		errs = append(errs, fmt.Errorf("NameServer %s: %w", ns, err))
		if ctx.Err() != nil {
			break
		}
	}
	return remoting.TopicRoute{}, errors.Join(errs...)
}
