package rmqtest

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// System topics (Java TopicValidator).
const (
	// DefaultTopic is the template topic for auto-created topics.
	DefaultTopic = "TBW102"
	// HalfTopic holds transactional half messages.
	HalfTopic = "RMQ_SYS_TRANS_HALF_TOPIC"
	// CheckMaxTopic receives half messages discarded after CheckMax checks.
	CheckMaxTopic = "TRANS_CHECK_MAX_TIME_TOPIC"
	// ScheduleTopic holds delayed messages until they are due.
	ScheduleTopic = "SCHEDULE_TOPIC_XXXX"
	// RetryPrefix starts a consumer group's retry topic, %RETRY%<group>.
	RetryPrefix = "%RETRY%"
	// DLQPrefix starts a consumer group's dead-letter topic, %DLQ%<group>.
	DLQPrefix = "%DLQ%"
)

// Topic permissions (Java PermName).
const (
	permInherit = 1
	permWrite   = 2
	permRead    = 4
	permRW      = permRead | permWrite
)

type topic struct {
	name   string
	perm   int
	queues []*queue
	readQ  int
	writeQ int
}

type queue struct {
	base   int64         // queue offset of msgs[0]: the min offset
	msgs   []*message    // msgs[i] has queue offset base+i
	notify chan struct{} // closed on the next append; nil when nobody waits
}

func (q *queue) minOffset() int64 { return q.base }
func (q *queue) maxOffset() int64 { return q.base + int64(len(q.msgs)) }

// at returns the message at queue offset off, which must be in
// [minOffset, maxOffset).
func (q *queue) at(off int64) *message { return q.msgs[off-q.base] }

// wait returns a channel closed at the next append. Call with broker.mu held.
func (q *queue) wait() <-chan struct{} {
	if q.notify == nil {
		q.notify = make(chan struct{})
	}
	return q.notify
}

// broker is the broker's in-memory state, kept across StopBroker/StartBroker.
type broker struct {
	s         *Server
	storeHost netip.AddrPort

	mu         sync.Mutex
	topics     map[string]*topic
	commitLog  map[int64]*message
	nextOffset int64
	txs        map[int64]*halfTx              // every transaction, by the half's commit log offset
	pending    map[int64]*halfTx              // the open ones, which check rounds visit
	producers  map[string]map[*conn]time.Time // group -> connections
	checkTurn  uint64                         // round-robin counter of producerConnLocked
	groups     map[string]*consumerGroup
	offsets    map[offsetKey]int64
	locks      map[lockKey]lockEntry
	faults     faults
	respDelay  atomic.Int64 // time.Duration
	delays     delayHeap
	delaySeq   int64
	delayWake  chan struct{}
}

type offsetKey struct {
	group, topic string
	queueID      int32
}

func newBroker(s *Server) *broker {
	b := &broker{
		s:         s,
		topics:    map[string]*topic{},
		commitLog: map[int64]*message{},
		txs:       map[int64]*halfTx{},
		pending:   map[int64]*halfTx{},
		producers: map[string]map[*conn]time.Time{},
		groups:    map[string]*consumerGroup{},
		offsets:   map[offsetKey]int64{},
		locks:     map[lockKey]lockEntry{},
		delayWake: make(chan struct{}, 1),
	}
	b.createTopicLocked(DefaultTopic, 8, permRW|permInherit)
	b.createTopicLocked(HalfTopic, 1, permRW)
	b.createTopicLocked(CheckMaxTopic, 1, permRW)
	b.createTopicLocked(ScheduleTopic, maxDelayLevel, permRW)
	for name, n := range s.opts.Topics {
		if n <= 0 {
			n = 4
		}
		b.createTopicLocked(name, n, permRW)
	}
	return b
}

// createTopicLocked creates a topic or grows an existing one to n queues.
// It reports whether anything changed.
func (b *broker) createTopicLocked(name string, n, perm int) bool {
	t := b.topics[name]
	if t == nil {
		t = &topic{name: name}
		b.topics[name] = t
	} else if len(t.queues) >= n && t.perm == perm {
		return false
	}
	for len(t.queues) < n {
		t.queues = append(t.queues, &queue{})
	}
	t.readQ, t.writeQ, t.perm = n, n, perm
	return true
}

// ensureTopic creates a topic and, if it is new, re-registers the broker
// with the NameServers at once, as Java does after an auto-create.
func (b *broker) ensureTopicLocked(name string, n int) *topic {
	if t := b.topics[name]; t != nil {
		return t
	}
	b.createTopicLocked(name, n, permRW)
	b.s.registerSoon()
	return b.topics[name]
}

// putLocked stores m at the end of its topic's queue, assigning the queue
// offset, the commit log offset and the store time, and wakes held pulls.
// If m.enc is set (see preEncode) only those fields are patched into it, so
// that the encoding work happens outside the lock; whoever changes a
// message's topic, queue or properties must clear m.enc.
func (b *broker) putLocked(m *message) error {
	t := b.topics[m.topic]
	if t == nil {
		return fmt.Errorf("topic %s does not exist", m.topic)
	}
	if m.queueID < 0 || int(m.queueID) >= len(t.queues) {
		return fmt.Errorf("queue %d of topic %s does not exist", m.queueID, m.topic)
	}
	q := t.queues[m.queueID]
	if m.enc == nil || m.storeHost != b.storeHost {
		m.storeHost = b.storeHost
		m.enc = m.encodeAs(nil, m.topic, m.queueID)
	}
	m.storeTimestamp = time.Now().UnixMilli()
	m.queueOffset = q.maxOffset()
	m.commitLogOffset = b.nextOffset
	m.patchStorePosition()
	b.nextOffset += int64(len(m.enc))
	b.commitLog[m.commitLogOffset] = m
	q.msgs = append(q.msgs, m)
	if limit := b.s.opts.MaxQueueMessages; limit > 0 && len(q.msgs) > limit {
		// Retention: forget the oldest, as Java deletes old commit log
		// files. Consumers behind them get PULL_OFFSET_MOVED.
		drop := len(q.msgs) - limit
		for _, old := range q.msgs[:drop] {
			delete(b.commitLog, old.commitLogOffset)
			if m.topic == HalfTopic {
				b.forgetResolvedTxLocked(old.commitLogOffset)
			}
		}
		clear(q.msgs[:drop])
		q.msgs = q.msgs[drop:]
		q.base += int64(drop)
	}
	if q.notify != nil {
		close(q.notify)
		q.notify = nil
	}
	return nil
}

// registration is what the broker endpoint at addr, with broker id id,
// tells a NameServer about itself.
func (b *broker) registration(id int64, addr string) brokerRegistration {
	b.mu.Lock()
	defer b.mu.Unlock()
	reg := brokerRegistration{
		Cluster:    b.s.opts.ClusterName,
		BrokerName: b.s.opts.BrokerName,
		BrokerID:   id,
		BrokerAddr: addr,
		Topics:     make(map[string]queueData, len(b.topics)),
	}
	for name, t := range b.topics {
		reg.Topics[name] = queueData{BrokerName: b.s.opts.BrokerName, ReadQueueNums: t.readQ, WriteQueueNums: t.writeQ, Perm: t.perm}
	}
	return reg
}

// handle dispatches one broker request.
//
// rocketmq-client-go sends UPDATE_CONSUMER_OFFSET and END_TRANSACTION
// "one-way" without setting the one-way flag, and closes its socket right
// after the last ones on shutdown. A reply still unread when it closes makes
// its kernel reset the connection, which discards the requests this server
// has not read yet: a shutting-down consumer's final offset commits would
// be lost. So those two codes get no reply when they come from a Go
// client's own connection (one that also sent, pulled or heart-beat),
// which never reads one anyway. (A real broker does reply, so against one
// the final commits can be lost and messages redelivered.) A connection
// that only ends transactions, as txorder's committer does, gets its
// answers, as from a real broker.
func (b *broker) handle(c *conn, req *remoting.Command) *remoting.Command {
	if req.Code != remoting.EndTransaction {
		c.client.Store(true)
	}
	resp := b.handleRequest(c, req)
	if (req.Code == remoting.UpdateConsumerOffset || req.Code == remoting.EndTransaction) && req.Language == "GO" && c.client.Load() {
		return nil
	}
	return resp
}

func (b *broker) handleRequest(c *conn, req *remoting.Command) *remoting.Command {
	if !b.s.isMaster(c.ep) {
		switch req.Code {
		case remoting.SendMessage, remoting.SendMessageV2, remoting.SendBatchMessage:
			// A Java slave's store refuses every put (rocketmq-all-4.9.4
			// store/src/main/java/org/apache/rocketmq/store/DefaultMessageStore.java:405-410)
			// and the send processor answers SERVICE_NOT_AVAILABLE
			// (broker/src/main/java/org/apache/rocketmq/broker/processor/SendMessageProcessor.java:507-511).
			return remoting.NewResponse(req, remoting.ServiceNotAvailable,
				"service not available now. It may be caused by one of the following reasons: the broker's disk is full, messages are put to the slave, message store has been shut down, etc.")
		}
	}
	switch req.Code {
	case remoting.SendMessage, remoting.SendMessageV2, remoting.SendBatchMessage:
		return b.handleSend(c, req)
	case remoting.EndTransaction:
		return b.handleEndTransaction(c, req)
	case remoting.PullMessage:
		return b.handlePull(c, req)
	case remoting.HeartBeat:
		return b.handleHeartbeat(c, req)
	case remoting.UnregisterClient:
		return b.handleUnregisterClient(c, req)
	case remoting.GetConsumerListByGroup:
		return b.handleConsumerList(req)
	case remoting.QueryConsumerOffset:
		return b.handleQueryOffset(req)
	case remoting.UpdateConsumerOffset:
		return b.handleUpdateOffset(req)
	case remoting.GetMaxOffset, remoting.GetMinOffset:
		return b.handleMinMaxOffset(req)
	case remoting.SearchOffsetByTimestamp:
		return b.handleSearchOffset(req)
	case remoting.ConsumerSendMsgBack:
		return b.handleSendBack(req)
	case remoting.LockBatchMQ:
		return b.handleLock(req)
	case remoting.UnlockBatchMQ:
		return b.handleUnlock(req)
	case remoting.UpdateAndCreateTopic:
		return b.handleCreateTopic(req)
	case remoting.DeleteTopicInBroker:
		return b.handleDeleteTopic(req)
	case remoting.GetAllSubscriptionGroupConfig:
		return b.handleSubscriptionGroups(req)
	default:
		return notSupported(req)
	}
}

func notSupported(req *remoting.Command) *remoting.Command {
	return remoting.NewResponse(req, remoting.RequestCodeNotSupported, fmt.Sprintf(" request type %d not supported", req.Code))
}

// onClose drops the registrations made on a closed connection and tells
// the affected consumer groups to rebalance.
func (b *broker) onClose(c *conn) {
	b.mu.Lock()
	for g, conns := range b.producers {
		delete(conns, c)
		if len(conns) == 0 {
			delete(b.producers, g)
		}
	}
	var changed []string
	for name, g := range b.groups {
		for id, m := range g.members {
			if m.conn == c {
				delete(g.members, id)
				changed = append(changed, name)
			}
		}
	}
	notify := b.notifyTargetsLocked(changed)
	b.mu.Unlock()
	b.sendNotify(notify)
}

// producerConnLocked picks the next live connection of a producer group
// to the master, or nil. Like Java's ProducerManager.getAvailableChannel
// (a shared counter modulo the group's channel count, rocketmq-all-4.9.4
// broker/src/main/java/org/apache/rocketmq/broker/client/ProducerManager.java:165-203),
// successive checks go round-robin over the group's producers, so with
// several replicas each one answers check-backs for half messages the
// others sent.
func (b *broker) producerConnLocked(group string) *conn {
	live := make([]*conn, 0, len(b.producers[group]))
	for c := range b.producers[group] {
		if !c.closed() && b.s.isMaster(c.ep) {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return nil
	}
	slices.SortFunc(live, func(x, y *conn) int { return strings.Compare(x.remote, y.remote) })
	b.checkTurn++
	return live[b.checkTurn%uint64(len(live))]
}

func (b *broker) registerProducerLocked(group string, c *conn) {
	if group == "" {
		return
	}
	m := b.producers[group]
	if m == nil {
		m = map[*conn]time.Time{}
		b.producers[group] = m
	}
	m[c] = time.Now()
}

func sortedTopicNames(m map[string]*topic) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isSystemTopic(name string) bool {
	return name == DefaultTopic || name == HalfTopic || name == CheckMaxTopic || name == ScheduleTopic ||
		strings.HasPrefix(name, "RMQ_SYS_")
}
