package remoting

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
)

// Transaction types of END_TRANSACTION's commitOrRollback (Java
// MessageSysFlag, rocketmq-all-4.9.4
// common/src/main/java/org/apache/rocketmq/common/sysflag/MessageSysFlag.java:36-39).
const (
	TransactionNotType      = 0
	TransactionCommitType   = 0x2 << 2 // 8
	TransactionRollbackType = 0x3 << 2 // 12
)

// EndTransactionHeader is the header of END_TRANSACTION (Java
// EndTransactionRequestHeader, rocketmq-all-4.9.4
// common/src/main/java/org/apache/rocketmq/common/protocol/header/EndTransactionRequestHeader.java:26-44).
// The broker finds the half message by CommitLogOffset and refuses with
// SYSTEM_ERROR unless ProducerGroup, TranStateTableOffset (the half's queue
// offset) and CommitLogOffset match it.
type EndTransactionHeader struct {
	ProducerGroup        string
	TranStateTableOffset int64
	CommitLogOffset      int64
	CommitOrRollback     int
	FromTransactionCheck bool
	MsgID                string
	TransactionID        string
}

// Ext returns the header as ext fields, named as the Java header's fields.
func (h EndTransactionHeader) Ext() map[string]string {
	return map[string]string{
		"producerGroup":        h.ProducerGroup,
		"tranStateTableOffset": strconv.FormatInt(h.TranStateTableOffset, 10),
		"commitLogOffset":      strconv.FormatInt(h.CommitLogOffset, 10),
		"commitOrRollback":     strconv.Itoa(h.CommitOrRollback),
		"fromTransactionCheck": strconv.FormatBool(h.FromTransactionCheck),
		"msgId":                h.MsgID,
		"transactionId":        h.TransactionID,
	}
}

// NewEndTransaction returns an END_TRANSACTION request for h. It is a
// two-way request: the broker answers it (the Java client sets the one-way
// flag and never learns the answer; a broker writes a response exactly
// when the flag is not set, rocketmq-all-4.9.4
// remoting/src/main/java/org/apache/rocketmq/remoting/netty/NettyRemotingAbstract.java:208).
func NewEndTransaction(h EndTransactionHeader) *Command {
	return NewRequest(EndTransaction, h.Ext(), nil)
}

// DecodeMessageID splits a broker message id (a send result's OffsetMsgID)
// into the store host and the commit-log offset, as Java
// MessageDecoder.decodeMessageId does (rocketmq-all-4.9.4
// common/src/main/java/org/apache/rocketmq/common/message/MessageDecoder.java:87-101):
// hex of 4 bytes IPv4 (16 for IPv6), 4 bytes port, 8 bytes offset, all
// big-endian; 32 or 56 hex digits.
func DecodeMessageID(id string) (netip.AddrPort, int64, error) {
	var ipLen int
	switch len(id) {
	case 32:
		ipLen = 4
	case 56:
		ipLen = 16
	default:
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q: %d hex digits, want 32 or 56", id, len(id))
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q: %w", id, err)
	}
	ip, _ := netip.AddrFromSlice(b[:ipLen])
	port := binary.BigEndian.Uint32(b[ipLen:])
	off := int64(binary.BigEndian.Uint64(b[ipLen+4:]))
	if port > 0xFFFF || off < 0 {
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q: port %d or offset %d out of range", id, port, off)
	}
	return netip.AddrPortFrom(ip, uint16(port)), off, nil
}

// EncodeMessageID is the inverse of DecodeMessageID (Java
// MessageDecoder.createMessageId), in upper-case hex as Java writes it.
func EncodeMessageID(host netip.AddrPort, offset int64) string {
	ip := host.Addr().Unmap()
	b := ip.AsSlice()
	b = binary.BigEndian.AppendUint32(b, uint32(host.Port()))
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xF])
	}
	return string(out)
}
