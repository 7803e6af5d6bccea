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
	"encoding/json"
	"errors"
	"fmt"

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
	BrokerName string `json:"b"`
	// CommitLogOffset is bytes 8–15 of the send result's OffsetMsgID.
	CommitLogOffset int64 `json:"c"`
	// QueueOffset is the send result's QueueOffset: the half message's
	// offset in RMQ_SYS_TRANS_HALF_TOPIC (tranStateTableOffset).
	QueueOffset int64 `json:"q"`
	// MsgID is the send result's MsgID (the client's UNIQ_KEY).
	MsgID string `json:"m"`
	// ProducerGroup is the transactional producer's group.
	ProducerGroup string `json:"g"`
	// TransactionID is the send result's TransactionID (empty with
	// rocketmq-client-go v2.1.2; the broker accepts that).
	TransactionID string `json:"t,omitempty"`
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

func (c Coordinates) encode() ([]byte, error) { return json.Marshal(c) }

func decodeCoordinates(b []byte) (Coordinates, error) {
	var c Coordinates
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("halfmsg: decode coordinates: %w", err)
	}
	return c, c.validate()
}
