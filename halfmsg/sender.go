package halfmsg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/remoting"
)

// SenderConfig tunes a Sender.
type SenderConfig struct {
	// NameServers returns the NameServers ("ip:port") the topic's route is
	// asked from, at each lookup (nsresolve.Resolver.Resolve). Required.
	NameServers func() []string
	// Topic is the event topic. Required.
	Topic string
	// ProducerGroup is the transactional producer's group: the broker
	// sends the check-backs of these half messages to that group's
	// producer (the client's, which heartbeats). Required.
	ProducerGroup string
	// Retries is how many more brokers a half message is offered to after
	// one refused it or could not be reached before the request left
	// (rocketmq.send_retries; default 0).
	Retries int
	// RouteTTL is how long the topic's route is used before it is asked
	// again, in the background (default 30s, the client's route refresh).
	// A refusal that names a stale route asks at once.
	RouteTTL time.Duration
	// EndTimeout bounds the write of each END_TRANSACTION (default 1s).
	EndTimeout time.Duration
	// ConnsPerAddr is the number of connections kept to each broker and
	// NameServer (default 2).
	ConnsPerAddr int
	// DialTimeout bounds each connect (default 500ms).
	DialTimeout time.Duration
}

func (c *SenderConfig) defaults() error {
	if c.NameServers == nil || c.Topic == "" || c.ProducerGroup == "" {
		return errors.New("halfmsg: sender needs name servers, the topic and the producer group")
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.RouteTTL <= 0 {
		c.RouteTTL = 30 * time.Second
	}
	if c.EndTimeout <= 0 {
		c.EndTimeout = time.Second
	}
	if c.ConnsPerAddr <= 0 {
		c.ConnsPerAddr = 2
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 500 * time.Millisecond
	}
	return nil
}

// Sender is the placement's transactional send, on connections of its own
// (docs/design.md §4.1, "The half message on txorder's own connections"):
// SEND_MESSAGE of the half message, the local transaction, then
// END_TRANSACTION one-way to the same broker — what the client's
// SendMessageInTransaction does, as one write per frame and without the
// client's goroutine per request. The client's producer stays: its
// heartbeats are what the broker sends this group's check-backs to, and
// its listener answers them.
//
// Messages look as the client's: the same properties (TRAN_MSG, PGROUP,
// UNIQ_KEY from primitive.CreateUniqID, KEYS), the same header fields, and
// END_TRANSACTION with the client's fields. Queues are taken round-robin
// over the writable queues of the brokers that have a master; a broker
// that refuses, or that could not be reached before the request left, is
// skipped for the next try (at most Retries more), as the client does.
type Sender struct {
	cfg      SenderConfig
	listener primitive.TransactionListener
	pool     *remoting.Pool
	routes   *topicRoutes
	next     atomic.Uint32

	checks chan struct{} // check-backs in progress (checkConcurrency)
}

// NewSender returns a Sender whose local transactions run in listener.
func NewSender(listener primitive.TransactionListener, cfg SenderConfig) (*Sender, error) {
	if listener == nil {
		return nil, errors.New("halfmsg: sender needs the transaction listener")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Sender{cfg: cfg, listener: listener, checks: make(chan struct{}, checkConcurrency)}
	s.pool = remoting.NewPool(remoting.PoolOptions{Size: cfg.ConnsPerAddr, DialTimeout: cfg.DialTimeout,
		Client: remoting.ClientOptions{OnRequest: s.onRequest}})
	s.routes = newTopicRoutes(s.pool, cfg.NameServers, cfg.Topic, cfg.RouteTTL, true, time.Now)
	return s, nil
}

// checkConcurrency bounds the check-backs answered at once on the
// Sender's connections.
const checkConcurrency = 4

// onRequest answers a CHECK_TRANSACTION_STATE that a broker sends on one
// of the Sender's connections, as the client answers one on its own:
// the listener's CheckLocalTransaction, then END_TRANSACTION one-way on
// that connection with the check's coordinates (rocketmq-client-go v2.1.2
// internal/client.go:234-264, producer/producer.go:662-699). A Java broker
// sends check-backs only to connections that heartbeat, which these do
// not; a broker that also sends them to connections that only sent (as
// internal/rmqtest does) gets them answered here rather than dropped.
func (s *Sender) onRequest(c *remoting.Client, req *remoting.Command) *remoting.Command {
	if req.Code != remoting.CheckTransactionState {
		return nil
	}
	msgs := primitive.DecodeMessage(req.Body)
	if len(msgs) == 0 || msgs[0].GetProperty(primitive.PropertyProducerGroup) != s.cfg.ProducerGroup {
		return nil
	}
	msg := msgs[0]
	uniq := msg.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex)
	if uniq != "" {
		msg.TransactionId = uniq
	} else {
		uniq = msg.MsgId
	}
	txID := msg.GetProperty(primitive.PropertyTransactionID)
	if txID == "" {
		txID = req.Ext["transactionId"]
	}
	if txID == "" {
		txID = msg.TransactionId
	}
	s.checks <- struct{}{}
	state := s.listener.CheckLocalTransaction(msg)
	<-s.checks
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.EndTimeout)
	defer cancel()
	_ = c.InvokeOneway(ctx, remoting.NewEndTransaction(remoting.EndTransactionHeader{
		ProducerGroup: s.cfg.ProducerGroup, TranStateTableOffset: req.ExtInt64("tranStateTableOffset", 0),
		CommitLogOffset: req.ExtInt64("commitLogOffset", 0), CommitOrRollback: decisionOf(state),
		FromTransactionCheck: true, MsgID: uniq, TransactionID: txID,
	}))
	return nil
}

// decisionOf is END_TRANSACTION's commitOrRollback for a listener answer.
func decisionOf(state primitive.LocalTransactionState) int {
	switch state {
	case primitive.CommitMessageState:
		return remoting.TransactionCommitType
	case primitive.RollbackMessageState:
		return remoting.TransactionRollbackType
	}
	return remoting.TransactionNotType
}

// Close closes the connections.
func (s *Sender) Close() { s.pool.Close() }

// The Java client's fixed header values (DefaultMQProducer's createTopicKey
// and defaultTopicQueueNums; rocketmq-client-go v2.1.2
// internal/request.go:88-89 writes the same).
const (
	defaultTopicKey       = "TBW102"
	defaultTopicQueueNums = "4"
	// sysFlagTxPrepared is MessageSysFlag.TRANSACTION_PREPARED_TYPE
	// (rocketmq-all-4.9.4 common/.../sysflag/MessageSysFlag.java:37).
	sysFlagTxPrepared = 0x1 << 2
	// permWrite is PermName.PERM_WRITE (rocketmq-all-4.9.4
	// common/src/main/java/org/apache/rocketmq/common/constant/PermName.java:22).
	permWrite = 0x1 << 1
)

// SendMessageInTransaction sends msg as a half message, runs the local
// transaction in the listener and ends the half message with its answer
// (listener.TxSender). It returns an error when no broker stored the half
// message as far as it knows (nothing ran locally); a send answered with a
// flush or slave timeout is rolled back, as the client does, and returned
// with that status.
func (s *Sender) SendMessageInTransaction(ctx context.Context, msg *primitive.Message) (*primitive.TransactionSendResult, error) {
	msg.WithProperty(primitive.PropertyTransactionPrepared, "true")
	msg.WithProperty(primitive.PropertyProducerGroup, s.cfg.ProducerGroup)
	if msg.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex) == "" {
		msg.WithProperty(primitive.PropertyUniqueClientMessageIdKeyIndex, primitive.CreateUniqID())
	}
	res, addr, err := s.send(ctx, msg)
	if err != nil {
		return nil, err
	}
	state := primitive.UnknowState
	switch res.Status {
	case primitive.SendOK:
		msg.TransactionId = res.MsgID
		state = s.listener.ExecuteLocalTransaction(msg)
	case primitive.SendFlushDiskTimeout, primitive.SendFlushSlaveTimeout, primitive.SendSlaveNotAvailable:
		state = primitive.RollbackMessageState
	}
	// An END_TRANSACTION that does not arrive leaves the half message to
	// its check-back, which decides the same from MySQL.
	_ = s.end(addr, res, state)
	return &primitive.TransactionSendResult{SendResult: res, State: state}, nil
}

// send offers msg to the route's queues until a broker answers with a
// send status or the tries run out; it returns the result and the address
// that answered.
func (s *Sender) send(ctx context.Context, msg *primitive.Message) (*primitive.SendResult, string, error) {
	props := msg.MarshallProperties()
	var (
		errs []error
		last string
	)
	for attempt := 0; attempt <= s.cfg.Retries; attempt++ {
		r, _, err := s.routes.get(ctx, attempt > 0 && last != "")
		if err != nil {
			errs = append(errs, err)
			break
		}
		mq, ok := r.pick(int(s.next.Add(1)), last)
		if !ok {
			errs = append(errs, fmt.Errorf("the route of %s has no writable queue with a master", s.cfg.Topic))
			break
		}
		last = mq.BrokerName
		addr := r.masters[mq.BrokerName]
		resp, err := s.pool.Invoke(ctx, addr, s.request(msg, mq, props))
		if err != nil {
			s.routes.expire(r)
			errs = append(errs, fmt.Errorf("send to %s (%s): %w", mq.BrokerName, addr, err))
			if !errors.Is(err, remoting.ErrNotSent) || ctx.Err() != nil {
				// It may have been stored: no second copy elsewhere.
				break
			}
			continue
		}
		res, err := sendResult(msg, mq, resp)
		if err == nil {
			return res, addr, nil
		}
		s.routes.expire(r)
		errs = append(errs, fmt.Errorf("send to %s (%s): %w", mq.BrokerName, addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// request is the SEND_MESSAGE of msg to mq, with the client's header.
func (s *Sender) request(msg *primitive.Message, mq primitive.MessageQueue, props string) *remoting.Command {
	return remoting.NewRequest(remoting.SendMessage, map[string]string{
		"producerGroup":         s.cfg.ProducerGroup,
		"topic":                 mq.Topic,
		"queueId":               strconv.Itoa(mq.QueueId),
		"sysFlag":               strconv.Itoa(sysFlagTxPrepared),
		"bornTimestamp":         strconv.FormatInt(time.Now().UnixMilli(), 10),
		"flag":                  strconv.Itoa(int(msg.Flag)),
		"reconsumeTimes":        "0",
		"unitMode":              "false",
		"maxReconsumeTimes":     "0",
		"defaultTopic":          defaultTopicKey,
		"defaultTopicQueueNums": defaultTopicQueueNums,
		"batch":                 "false",
		"properties":            props,
	}, msg.Body)
}

// sendResult reads a SEND_MESSAGE answer as the client does
// (rocketmq-client-go v2.1.2 internal/client.go:728-772): a store status,
// or an error for any other code (nothing was stored).
func sendResult(msg *primitive.Message, mq primitive.MessageQueue, resp *remoting.Command) (*primitive.SendResult, error) {
	var status primitive.SendStatus
	switch resp.Code {
	case remoting.Success:
		status = primitive.SendOK
	case remoting.FlushDiskTimeout:
		status = primitive.SendFlushDiskTimeout
	case remoting.FlushSlaveTimeout:
		status = primitive.SendFlushSlaveTimeout
	case remoting.SlaveNotAvailable:
		status = primitive.SendSlaveNotAvailable
	default:
		return nil, fmt.Errorf("refused: code %d: %s", resp.Code, resp.Remark)
	}
	queueID, _ := strconv.Atoi(resp.Ext["queueId"])
	return &primitive.SendResult{
		Status:        status,
		MsgID:         msg.GetProperty(primitive.PropertyUniqueClientMessageIdKeyIndex),
		OffsetMsgID:   resp.Ext["msgId"],
		MessageQueue:  &primitive.MessageQueue{Topic: mq.Topic, BrokerName: mq.BrokerName, QueueId: queueID},
		QueueOffset:   resp.ExtInt64("queueOffset", 0),
		TransactionID: resp.Ext["transactionId"],
		RegionID:      resp.Ext[primitive.PropertyMsgRegion],
	}, nil
}

// end writes END_TRANSACTION one-way to addr, with the client's fields
// (rocketmq-client-go v2.1.2 producer/producer.go:747-769).
func (s *Sender) end(addr string, res *primitive.SendResult, state primitive.LocalTransactionState) error {
	_, commitLogOffset, err := remoting.DecodeMessageID(res.OffsetMsgID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.EndTimeout)
	defer cancel()
	return s.pool.InvokeOneway(ctx, addr, remoting.NewEndTransaction(remoting.EndTransactionHeader{
		ProducerGroup: s.cfg.ProducerGroup, TranStateTableOffset: res.QueueOffset, CommitLogOffset: commitLogOffset,
		CommitOrRollback: decisionOf(state), MsgID: res.MsgID, TransactionID: res.TransactionID,
	}))
}
