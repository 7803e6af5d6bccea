package rmqtest

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// Property names the server reads or writes (Java MessageConst).
const (
	propUniqKey        = "UNIQ_KEY"
	propTags           = "TAGS"
	propKeys           = "KEYS"
	propDelay          = "DELAY"
	propTranMsg        = "TRAN_MSG"
	propPGroup         = "PGROUP"
	propRealTopic      = "REAL_TOPIC"
	propRealQID        = "REAL_QID"
	propRetryTopic     = "RETRY_TOPIC"
	propOriginMsgID    = "ORIGIN_MESSAGE_ID"
	propCheckTimes     = "TRANSACTION_CHECK_TIMES"
	propCheckImmunity  = "CHECK_IMMUNITY_TIME_IN_SECONDS"
	propCluster        = "CLUSTER"
	propPreparedOffset = "TRAN_PREPARED_QUEUE_OFFSET"
)

// sysFlag bits (Java MessageSysFlag).
const (
	sysFlagCompressed  = 0x1
	sysFlagTxMask      = 0xC
	sysFlagTxPrepared  = 0x4
	sysFlagTxCommit    = 0x8
	sysFlagBornHostV6  = 0x10
	sysFlagStoreHostV6 = 0x20
)

const magicV1 = 0xDAA320A7

// message is one stored record. Fields that end up on the wire in the
// stored-message layout are set before the record is encoded; enc caches
// that encoding for pulls.
type message struct {
	topic            string
	queueID          int32
	flag             int32
	body             []byte
	props            map[string]string
	sysFlag          int32
	bornTimestamp    int64
	bornHost         netip.AddrPort
	storeTimestamp   int64
	storeHost        netip.AddrPort
	reconsumeTimes   int32
	preparedTxOffset int64
	commitLogOffset  int64
	queueOffset      int64

	enc []byte
}

// clone copies m without its store position and encoding.
func (m *message) clone() *message {
	c := *m
	c.props = make(map[string]string, len(m.props)+2)
	for k, v := range m.props {
		c.props[k] = v
	}
	c.enc = nil
	return &c
}

// decodeProperties parses "k\x01v\x02..." keeping only well-formed pairs,
// as the Java and Go decoders do.
func decodeProperties(s string) map[string]string {
	m := make(map[string]string, 8)
	for len(s) > 0 {
		item := s
		if i := strings.IndexByte(s, 2); i >= 0 {
			item, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		k, v, ok := strings.Cut(item, "\x01")
		if !ok || k == "" || strings.IndexByte(v, 1) >= 0 {
			continue
		}
		m[k] = v
	}
	return m
}

// encodeProperties writes the properties in key order, each followed by
// the 0x02 separator.
func encodeProperties(m map[string]string) string {
	keys := make([]string, 0, len(m))
	n := 0
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(1)
		b.WriteString(m[k])
		b.WriteByte(2)
	}
	return b.String()
}

// offsetMsgID is the broker's message id: store host and commit log
// offset in upper-case hex (Java MessageDecoder.createMessageId).
func offsetMsgID(store netip.AddrPort, off int64) string { return remoting.EncodeMessageID(store, off) }

func appendHost(dst []byte, ap netip.AddrPort) []byte {
	ip := ap.Addr().Unmap()
	var four [4]byte
	if ip.Is4() {
		four = ip.As4()
	}
	dst = append(dst, four[:]...)
	return binary.BigEndian.AppendUint32(dst, uint32(ap.Port()))
}

// encode writes m in the stored-message layout (MAGIC V1, IPv4 hosts),
// under the given topic and queue id (a check-back names the real topic).
func (m *message) encodeAs(dst []byte, topic string, queueID int32) []byte {
	props := encodeProperties(m.props)
	size := 84 + 4 + len(m.body) + 1 + len(topic) + 2 + len(props)
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	dst = binary.BigEndian.AppendUint32(dst, magicV1)
	dst = binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(m.body))
	dst = binary.BigEndian.AppendUint32(dst, uint32(queueID))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.flag))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.queueOffset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.commitLogOffset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.sysFlag&^(sysFlagBornHostV6|sysFlagStoreHostV6)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.bornTimestamp))
	dst = appendHost(dst, m.bornHost)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.storeTimestamp))
	dst = appendHost(dst, m.storeHost)
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.reconsumeTimes))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.preparedTxOffset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.body)))
	dst = append(dst, m.body...)
	dst = append(dst, byte(len(topic)))
	dst = append(dst, topic...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(props)))
	dst = append(dst, props...)
	if len(dst)-start != size {
		panic(fmt.Sprintf("rmqtest: encoded %d bytes, want %d", len(dst)-start, size))
	}
	return dst
}

// Byte positions of the fields putLocked assigns, in the stored layout.
const (
	posQueueOffset    = 20
	posCommitLogOff   = 28
	posStoreTimestamp = 56
)

// preEncode encodes m for storeHost before it is stored, so putLocked
// only patches the store position in.
func (m *message) preEncode(storeHost netip.AddrPort) {
	m.storeHost = storeHost
	m.enc = m.encodeAs(nil, m.topic, m.queueID)
}

// patchStorePosition writes the queue offset, commit log offset and store
// time into m.enc.
func (m *message) patchStorePosition() {
	binary.BigEndian.PutUint64(m.enc[posQueueOffset:], uint64(m.queueOffset))
	binary.BigEndian.PutUint64(m.enc[posCommitLogOff:], uint64(m.commitLogOffset))
	binary.BigEndian.PutUint64(m.enc[posStoreTimestamp:], uint64(m.storeTimestamp))
}

func (m *message) encoded() []byte {
	if m.enc == nil {
		m.enc = m.encodeAs(nil, m.topic, m.queueID)
	}
	return m.enc
}

func (m *message) encodedSize() int {
	n := 0
	for k, v := range m.props {
		n += len(k) + len(v) + 2
	}
	return 84 + 4 + len(m.body) + 1 + len(m.topic) + 2 + n
}

// Message is a stored message as the test hooks show it.
type Message struct {
	Topic           string
	QueueID         int
	QueueOffset     int64
	CommitLogOffset int64
	// MsgID is the UNIQ_KEY property (the client's message id), or the
	// offset msgId when there is none (batch members).
	MsgID string
	// OffsetMsgID is the broker's id: store host and commit log offset.
	OffsetMsgID string
	// Body is the message body, inflated if the producer compressed it.
	Body           []byte
	Properties     map[string]string
	Tags           string
	Keys           string
	SysFlag        int32
	Flag           int32
	ReconsumeTimes int32
	BornTimestamp  time.Time
	StoreTimestamp time.Time
}

func (m *message) export() Message {
	props := make(map[string]string, len(m.props))
	for k, v := range m.props {
		props[k] = v
	}
	body := append([]byte(nil), m.body...)
	if m.sysFlag&sysFlagCompressed != 0 {
		if b, err := inflate(m.body); err == nil {
			body = b
		}
	}
	off := offsetMsgID(m.storeHost, m.commitLogOffset)
	id := m.props[propUniqKey]
	if id == "" {
		id = off
	}
	return Message{
		Topic:           m.topic,
		QueueID:         int(m.queueID),
		QueueOffset:     m.queueOffset,
		CommitLogOffset: m.commitLogOffset,
		MsgID:           id,
		OffsetMsgID:     off,
		Body:            body,
		Properties:      props,
		Tags:            m.props[propTags],
		Keys:            m.props[propKeys],
		SysFlag:         m.sysFlag,
		Flag:            m.flag,
		ReconsumeTimes:  m.reconsumeTimes,
		BornTimestamp:   time.UnixMilli(m.bornTimestamp),
		StoreTimestamp:  time.UnixMilli(m.storeTimestamp),
	}
}

// inflate reads at most 64 MiB of a zlib stream.
func inflate(b []byte) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return out, nil
}

// decodeBatch splits a SEND_BATCH_MESSAGE body into its members:
// TOTALSIZE, MAGIC, BODYCRC, FLAG, BODYSIZE, BODY, PROPERTIESSIZE(int16), PROPERTIES.
func decodeBatch(b []byte) ([]batchEntry, error) {
	var out []batchEntry
	for len(b) > 0 {
		if len(b) < 20 {
			return nil, errors.New("truncated batch entry")
		}
		total := int(int32(binary.BigEndian.Uint32(b)))
		flag := int32(binary.BigEndian.Uint32(b[12:]))
		bodyLen := int(int32(binary.BigEndian.Uint32(b[16:])))
		p := b[20:]
		if bodyLen < 0 || bodyLen > len(p) {
			return nil, errors.New("bad batch body length")
		}
		body := p[:bodyLen]
		p = p[bodyLen:]
		if len(p) < 2 {
			return nil, errors.New("truncated batch properties length")
		}
		pl := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if pl > len(p) {
			return nil, errors.New("bad batch properties length")
		}
		props := string(p[:pl])
		p = p[pl:]
		used := len(b) - len(p)
		if total != used {
			return nil, fmt.Errorf("batch entry size %d, decoded %d", total, used)
		}
		out = append(out, batchEntry{flag: flag, body: body, props: props})
		b = p
	}
	if len(out) == 0 {
		return nil, errors.New("empty batch")
	}
	return out, nil
}

type batchEntry struct {
	flag  int32
	body  []byte
	props string
}
