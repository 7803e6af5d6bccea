package rmqtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// Test hooks: inspect and steer the server directly, like miniredis's
// direct.go. All of them are safe for concurrent use; those about the
// broker panic on a server started with NoBroker.

// TopicInfo describes one topic.
type TopicInfo struct {
	Name string
	// Depths holds each queue's max offset: how many messages were ever
	// appended to it.
	Depths []int64
	Perm   int
}

// Topics lists every topic the broker knows, system topics included,
// sorted by name.
func (s *Server) Topics() []TopicInfo {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]TopicInfo, 0, len(b.topics))
	for _, name := range sortedTopicNames(b.topics) {
		t := b.topics[name]
		ti := TopicInfo{Name: name, Perm: t.perm, Depths: make([]int64, len(t.queues))}
		for i, q := range t.queues {
			ti.Depths[i] = q.maxOffset()
		}
		out = append(out, ti)
	}
	return out
}

// QueueDepths returns each queue's max offset for a topic, or nil if the
// topic does not exist.
func (s *Server) QueueDepths(topic string) []int64 {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[topic]
	if t == nil {
		return nil
	}
	out := make([]int64, len(t.queues))
	for i, q := range t.queues {
		out[i] = q.maxOffset()
	}
	return out
}

// CreateTopic creates a topic with n queues (4 when n <= 0), or grows an
// existing one, and registers it with the NameServer at once.
func (s *Server) CreateTopic(topic string, n int) error {
	if topic == "" || len(topic) > 127 || n > 1024 {
		return fmt.Errorf("rmqtest: bad topic %q with %d queues", topic, n)
	}
	if n <= 0 {
		n = 4
	}
	b := s.mustBroker()
	b.mu.Lock()
	b.createTopicLocked(topic, n, permRW)
	b.mu.Unlock()
	s.registerNow()
	return nil
}

// Messages returns every message stored in a topic, queue by queue in
// offset order. It works for system topics too: HalfTopic (every half
// message ever received, and the copy each check re-put; a copy keeps the
// MsgID), CheckMaxTopic, ScheduleTopic, %RETRY%<group> and %DLQ%<group>.
func (s *Server) Messages(topic string) []Message {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[topic]
	if t == nil {
		return nil
	}
	var out []Message
	for _, q := range t.queues {
		for _, m := range q.msgs {
			out = append(out, m.export())
		}
	}
	return out
}

// PendingHalfMessages returns the live copy of each half message whose
// transaction is still open (neither committed, rolled back nor
// discarded), oldest transaction first. The TRANSACTION_CHECK_TIMES
// property counts the checks sent so far; the offsets are the copy the
// next END_TRANSACTION must name to end it.
func (s *Server) PendingHalfMessages() []Message {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	txs := make([]*halfTx, 0, len(b.pending))
	for _, tx := range b.pending {
		txs = append(txs, tx)
	}
	sort.Slice(txs, func(i, j int) bool { return txs[i].half.commitLogOffset < txs[j].half.commitLogOffset })
	out := make([]Message, 0, len(txs))
	for _, tx := range txs {
		out = append(out, tx.live.export())
	}
	return out
}

// CheckHalf sends one CHECK_TRANSACTION_STATE for the half message whose
// KEYS property is key, now and whatever its transaction's state, and
// reports whether there was one and a producer connection to send it on.
// It reproduces a race of the real broker: its check service reads a
// batch of half messages and checks each one unless an op message (the
// trace of a COMMIT or ROLLBACK) was written before the read, so a check
// can reach the producer after the transaction was ended. The producer's
// answer is applied as any END_TRANSACTION: a second COMMIT writes a
// second copy.
func (s *Server) CheckHalf(key string) bool {
	b := s.mustBroker()
	b.mu.Lock()
	var tx *halfTx
	for _, t := range b.txs {
		if t.half.props[propKeys] == key && (tx == nil || t.half.commitLogOffset > tx.half.commitLogOffset) {
			tx = t // the latest half message sent with that key
		}
	}
	var c *conn
	var cmd *remoting.Command
	if tx != nil {
		c, cmd = b.recheckLocked(tx)
	}
	b.mu.Unlock()
	return c != nil && c.send(cmd) == nil
}

// CheckNow runs one transaction check round immediately: every pending
// half message older than its immunity time (TransactionTimeout or
// CHECK_IMMUNITY_TIME_IN_SECONDS) gets a CHECK_TRANSACTION_STATE, or is
// moved to CheckMaxTopic once it had CheckMax checks. It returns once the
// checks are written, not when the producers answer.
func (s *Server) CheckNow() { s.checkRound() }

// Publish stores a message directly, as if a producer had sent it, and
// returns it. A queueID outside the topic's queues is an error.
// Properties may include TAGS, KEYS and DELAY (a delay level).
func (s *Server) Publish(topic string, queueID int, body []byte, props map[string]string) (Message, error) {
	b := s.mustBroker()
	m := &message{topic: topic, queueID: int32(queueID), body: append([]byte(nil), body...),
		props: map[string]string{}, bornTimestamp: time.Now().UnixMilli(), bornHost: b.storeHost}
	for k, v := range props {
		m.props[k] = v
	}
	if m.props[propUniqKey] == "" {
		var id [16]byte
		_, _ = rand.Read(id[:])
		m.props[propUniqKey] = strings.ToUpper(hex.EncodeToString(id[:]))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.topics[topic]; t == nil || queueID < 0 || queueID >= len(t.queues) {
		return Message{}, fmt.Errorf("rmqtest: no queue %d in topic %q", queueID, topic)
	}
	var lvl int
	if _, err := fmt.Sscan(m.props[propDelay], &lvl); err == nil && lvl > 0 {
		b.scheduleLocked(m, lvl)
	} else if err := b.putLocked(m); err != nil {
		return Message{}, err
	}
	return m.export(), nil
}

// ConsumerOffset returns the offset a consumer group committed for a queue.
func (s *Server) ConsumerOffset(group, topic string, queueID int) (int64, bool) {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	off, ok := b.offsets[offsetKey{group, topic, int32(queueID)}]
	return off, ok
}

// ConsumerIDs returns the client ids of a consumer group's live members,
// sorted, as GET_CONSUMER_LIST_BY_GROUP answers them.
func (s *Server) ConsumerIDs(group string) []string {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.consumerIDsLocked(group)
}

// Fault injection.

type faults struct {
	failLeft int  // sends still to fail
	failAll  bool // fail every send until cleared
	failCode int
	dropEnds int // END_TRANSACTION requests still to ignore
}

// FailNextSends makes the next n SEND_MESSAGE / SEND_BATCH_MESSAGE
// requests (half messages included) fail with the given non-zero response
// code (0 is replaced by 1 SYSTEM_ERROR),
// e.g. 1 SYSTEM_ERROR or 14 SERVICE_NOT_AVAILABLE (the client retries
// those, up to 3 more attempts for a sync send) or 2 SYSTEM_BUSY (not
// retried).
func (s *Server) FailNextSends(n, code int) {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.failLeft, b.faults.failAll, b.faults.failCode = n, false, nonZero(code)
}

// FailSends makes every send fail with code until ClearFaults.
func (s *Server) FailSends(code int) {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.failLeft, b.faults.failAll, b.faults.failCode = 0, true, nonZero(code)
}

func nonZero(code int) int {
	if code == 0 {
		return 1
	}
	return code
}

// DropNextEndTransactions makes the broker ignore the next n
// END_TRANSACTION requests, as if they were lost on the network: the
// producer's decision is not applied and the transaction stays pending
// until a check-back resolves it. (The client sends END_TRANSACTION
// one-way and drops its errors, so this can happen with a real broker.)
func (s *Server) DropNextEndTransactions(n int) {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.dropEnds = n
}

// DelayResponses delays every broker response by d (0 turns it off).
// rocketmq-client-go times out sync sends after 3s, and an async send
// whose reply takes longer than 3s panics inside the client.
func (s *Server) DelayResponses(d time.Duration) {
	s.mustBroker().respDelay.Store(int64(d))
}

// ClearFaults turns off every injected send failure, dropped
// END_TRANSACTION and response delay.
func (s *Server) ClearFaults() {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = faults{}
	b.respDelay.Store(0)
}

// BrokerConnections returns the remote addresses of the broker's client
// connections.
func (s *Server) BrokerConnections() []string {
	if s.brokerEP == nil {
		return nil
	}
	var out []string
	for _, c := range s.brokerEP.connections() {
		out = append(out, c.remote)
	}
	sort.Strings(out)
	return out
}

// DropConnection closes the broker connection from remoteAddr, as a
// network failure would. It reports whether one was found.
func (s *Server) DropConnection(remoteAddr string) bool {
	if s.brokerEP == nil {
		return false
	}
	for _, c := range s.brokerEP.connections() {
		if c.remote == remoteAddr {
			c.close()
			return true
		}
	}
	return false
}

// DropConnections closes every broker client connection and returns how
// many it closed; clients re-dial on their next request.
func (s *Server) DropConnections() int {
	if s.brokerEP == nil {
		return 0
	}
	conns := s.brokerEP.connections()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

// injectedFaultLocked consumes one injected send failure, if any.
func (b *broker) injectedFaultLocked() (code int, remark string, ok bool) {
	f := &b.faults
	switch {
	case f.failAll:
	case f.failLeft > 0:
		f.failLeft--
	default:
		return 0, "", false
	}
	return f.failCode, fmt.Sprintf("rmqtest: injected failure (code %d)", f.failCode), true
}

func (b *broker) responseDelay() time.Duration {
	return time.Duration(b.respDelay.Load())
}

var errNoBroker = errors.New("rmqtest: server runs without a broker (NoBroker)")

func (s *Server) mustBroker() *broker {
	if s.broker == nil {
		panic(errNoBroker)
	}
	return s.broker
}

// TransactionStats counts transactions by outcome.
type TransactionStats struct {
	Pending, Committed, RolledBack, Discarded int
	// ExtraCommits counts the COMMITs beyond a transaction's first: each
	// wrote one more copy of the message to its topic, as a real broker
	// does (a second COMMIT of the same copy, or of another copy of the
	// half message).
	ExtraCommits int
}

// Transactions counts the transactions the broker remembers, by outcome;
// Discarded ones were moved to CheckMaxTopic. With MaxQueueMessages,
// finished transactions are forgotten once retention drops their half
// message; open ones are always kept.
func (s *Server) Transactions() TransactionStats {
	b := s.mustBroker()
	b.mu.Lock()
	defer b.mu.Unlock()
	var st TransactionStats
	seen := make(map[*halfTx]bool, len(b.txs))
	for _, tx := range b.txs {
		if seen[tx] {
			continue // one entry per copy of the half message
		}
		seen[tx] = true
		switch tx.state {
		case txPending:
			st.Pending++
		case txCommitted:
			st.Committed++
		case txRolledBack:
			st.RolledBack++
		case txDiscarded:
			st.Discarded++
		}
		st.ExtraCommits += max(tx.commits-1, 0)
	}
	return st
}
