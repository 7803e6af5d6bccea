// Package halfmsg ends placements' half messages directly: a paid order's
// ORDER_PAID event is committed the moment its payment commits, instead of
// at the broker's next check-back (up to a check interval, 60 s by default
// on Apache RocketMQ, later).
//
// No RocketMQ client can commit a half message after the local transaction
// returned, but the broker accepts END_TRANSACTION from any connection
// (rocketmq-all-4.9.4 EndTransactionProcessor). So each placement records
// where its half message is (Coordinates: broker name, commit-log offset,
// queue offset, message id, producer group) in Redis, where every orderd
// replica's payment handler finds it; after a payment commits PAID the
// Committer sends COMMIT to the master of that broker name, and ROLLBACK
// after the closer closes an order. Everything here is best effort and
// bounded: whatever is missing or fails, nothing more is done and the
// check-back decides, as it always did.
package halfmsg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/txorder/txorder/internal/remoting"
)

// Coordinates locate one half message: exactly what END_TRANSACTION needs
// to find it and what the broker checks (EndTransactionProcessor
// .checkPrepareMessage, rocketmq-all-4.9.4
// broker/src/main/java/org/apache/rocketmq/broker/processor/EndTransactionProcessor.java:165-193).
type Coordinates struct {
	// BrokerName is the broker group that stored the half message; END_
	// TRANSACTION goes to its master (brokerId 0) as the route names it
	// at commit time, since a DLedger leader change moves it.
	BrokerName string
	// CommitLogOffset is bytes 8–15 of the send result's OffsetMsgID.
	CommitLogOffset int64
	// QueueOffset is the send result's QueueOffset: the half message's
	// offset in RMQ_SYS_TRANS_HALF_TOPIC (tranStateTableOffset).
	QueueOffset int64
	// MsgID is the send result's MsgID (the client's UNIQ_KEY).
	MsgID string
	// ProducerGroup is the transactional producer's group.
	ProducerGroup string
	// TransactionID is the send result's TransactionID (empty with
	// rocketmq-client-go v2.1.2; the broker accepts that).
	TransactionID string
}

// FromSendResult takes the coordinates of the half message res describes,
// sent by a producer of group.
func FromSendResult(group string, res *primitive.SendResult) (Coordinates, error) {
	if res == nil || res.MessageQueue == nil {
		return Coordinates{}, errors.New("halfmsg: send result without a message queue")
	}
	id := res.OffsetMsgID
	if id == "" {
		// Java's client falls back to MsgID the same way
		// (DefaultMQProducerImpl.endTransaction, rocketmq-all-4.9.4
		// client/.../impl/producer/DefaultMQProducerImpl.java:1316-1320).
		id = res.MsgID
	}
	_, off, err := remoting.DecodeMessageID(id)
	if err != nil {
		return Coordinates{}, fmt.Errorf("halfmsg: commit-log offset: %w", err)
	}
	c := Coordinates{BrokerName: res.MessageQueue.BrokerName, CommitLogOffset: off, QueueOffset: res.QueueOffset,
		MsgID: res.MsgID, ProducerGroup: group, TransactionID: res.TransactionID}
	return c, c.validate()
}

func (c Coordinates) validate() error {
	if c.BrokerName == "" || c.ProducerGroup == "" || c.MsgID == "" || c.CommitLogOffset < 0 || c.QueueOffset < 0 {
		return fmt.Errorf("halfmsg: incomplete coordinates %+v", c)
	}
	return nil
}

// header is END_TRANSACTION's header ending this half message with
// decision (remoting.TransactionCommitType or TransactionRollbackType).
func (c Coordinates) header(decision int) remoting.EndTransactionHeader {
	return remoting.EndTransactionHeader{
		ProducerGroup:        c.ProducerGroup,
		TranStateTableOffset: c.QueueOffset,
		CommitLogOffset:      c.CommitLogOffset,
		CommitOrRollback:     decision,
		FromTransactionCheck: false,
		MsgID:                c.MsgID,
		TransactionID:        c.TransactionID,
	}
}

// encode is the Store's form: version, then the fields one per line
// (RocketMQ names may contain '|' and ',', never a newline).
func (c Coordinates) encode() string {
	return strings.Join([]string{"1", c.BrokerName, strconv.FormatInt(c.CommitLogOffset, 10), strconv.FormatInt(c.QueueOffset, 10),
		c.MsgID, c.ProducerGroup, c.TransactionID}, "\n")
}

func decodeCoordinates(s string) (Coordinates, error) {
	f := strings.Split(s, "\n")
	if len(f) != 7 || f[0] != "1" {
		return Coordinates{}, fmt.Errorf("halfmsg: recorded coordinates %q: unknown form", s)
	}
	c := Coordinates{BrokerName: f[1], MsgID: f[4], ProducerGroup: f[5], TransactionID: f[6]}
	var err1, err2 error
	c.CommitLogOffset, err1 = strconv.ParseInt(f[2], 10, 64)
	c.QueueOffset, err2 = strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return c, fmt.Errorf("halfmsg: recorded coordinates %q: %w", s, err)
	}
	return c, nil
}

// encodeOffsets is the live copy's queue and commit-log offset.
func (c Coordinates) encodeOffsets() string {
	return strconv.FormatInt(c.QueueOffset, 10) + "\n" + strconv.FormatInt(c.CommitLogOffset, 10)
}

func (c *Coordinates) decodeOffsets(s string) error {
	q, off, ok := strings.Cut(s, "\n")
	var err1, err2 error
	c.QueueOffset, err1 = strconv.ParseInt(q, 10, 64)
	c.CommitLogOffset, err2 = strconv.ParseInt(off, 10, 64)
	if err := errors.Join(err1, err2); err != nil || !ok {
		return fmt.Errorf("halfmsg: recorded live copy %q: unreadable", s)
	}
	return nil
}
