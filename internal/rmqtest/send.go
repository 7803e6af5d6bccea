package rmqtest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// sendHeader is SendMessageRequestHeader, from either the long (code 10)
// or the abbreviated a..m (code 320, V2) ext names.
type sendHeader struct {
	group, topic, defaultTopic string
	defaultQueueNums           int
	queueID                    int32
	sysFlag                    int32
	bornTimestamp              int64
	flag                       int32
	properties                 string
	reconsumeTimes             int32
	maxReconsumeTimes          int32
	batch                      bool
}

func parseSendHeader(req *remoting.Command) sendHeader {
	e := req.Ext
	get := func(long, short string) string {
		if v, ok := e[long]; ok {
			return v
		}
		return e[short]
	}
	num := func(long, short string) int64 {
		n, _ := strconv.ParseInt(get(long, short), 10, 64)
		return n
	}
	h := sendHeader{
		group:             get("producerGroup", "a"),
		topic:             get("topic", "b"),
		defaultTopic:      get("defaultTopic", "c"),
		defaultQueueNums:  int(num("defaultTopicQueueNums", "d")),
		queueID:           int32(num("queueId", "e")),
		sysFlag:           int32(num("sysFlag", "f")),
		bornTimestamp:     num("bornTimestamp", "g"),
		flag:              int32(num("flag", "h")),
		properties:        get("properties", "i"),
		reconsumeTimes:    int32(num("reconsumeTimes", "j")),
		maxReconsumeTimes: int32(num("maxReconsumeTimes", "l")),
	}
	h.batch, _ = strconv.ParseBool(get("batch", "m"))
	return h
}

func hostOf(addr string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

// topicForSendLocked finds the target topic, auto-creating it from the
// default topic (TBW102) or as a retry topic the way Java's msgCheck does.
// A non-zero code is the error reply's, with problem as its remark.
func (b *broker) topicForSendLocked(h *sendHeader) (t *topic, code int, problem string) {
	t = b.topics[h.topic]
	if t == nil {
		switch {
		case strings.HasPrefix(h.topic, RetryPrefix):
			t = b.ensureTopicLocked(h.topic, 1)
		case h.defaultTopic != "" && b.topics[h.defaultTopic] != nil && b.topics[h.defaultTopic].perm&permInherit != 0:
			def := b.topics[h.defaultTopic]
			n := h.defaultQueueNums
			if n <= 0 || n > def.writeQ {
				n = def.writeQ
			}
			t = b.ensureTopicLocked(h.topic, n)
			b.s.log.Info("topic auto-created", "topic", h.topic, "queues", n)
		default:
			return nil, remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please!", h.topic)
		}
	}
	if t.perm&permWrite == 0 {
		return t, remoting.NoPermission, fmt.Sprintf("the topic[%s] sending message is forbidden", h.topic)
	}
	if h.queueID < 0 {
		h.queueID = 0
	}
	if int(h.queueID) >= max(t.readQ, t.writeQ) {
		return t, remoting.SystemError, fmt.Sprintf("request queueId[%d] is illegal, topic:[%s] topicConfig.writeQueueNums:[%d]", h.queueID, h.topic, t.writeQ)
	}
	return t, remoting.Success, ""
}

func (b *broker) handleSend(c *conn, req *remoting.Command) *remoting.Command {
	h := parseSendHeader(req)
	if h.topic == "" || len(h.topic) > 127 {
		return remoting.NewResponse(req, remoting.MessageIllegal, fmt.Sprintf("topic %q is not valid", h.topic))
	}
	if len(req.Body) == 0 {
		return remoting.NewResponse(req, remoting.MessageIllegal, "message body is empty")
	}
	bornHost := hostOf(c.remote)
	if req.Code == remoting.SendBatchMessage || h.batch {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.registerProducerLocked(h.group, c)
		if code, remark, ok := b.injectedFaultLocked(); ok {
			return remoting.NewResponse(req, code, remark)
		}
		if _, code, problem := b.topicForSendLocked(&h); code != remoting.Success {
			return remoting.NewResponse(req, code, problem)
		}
		return b.storeBatchLocked(req, &h, bornHost)
	}

	// Build and encode the message before taking the lock; the topic
	// checks below may still refuse it.
	m := &message{
		topic:          h.topic,
		queueID:        max(h.queueID, 0),
		flag:           h.flag,
		body:           req.Body, // aliases the request frame, which nothing else keeps
		props:          decodeProperties(h.properties),
		sysFlag:        h.sysFlag,
		bornTimestamp:  h.bornTimestamp,
		bornHost:       bornHost,
		reconsumeTimes: h.reconsumeTimes,
	}
	if b.s.opts.ClusterName != "" {
		m.props[propCluster] = b.s.opts.ClusterName
	}
	tx, _ := strconv.ParseBool(m.props[propTranMsg])
	lvl, _ := strconv.Atoi(m.props[propDelay])
	plain := !tx && lvl <= 0
	if plain {
		m.sysFlag &^= sysFlagTxMask
		m.preEncode(b.storeHost)
	}
	uniq := m.props[propUniqKey] // read before the map is shared

	b.mu.Lock()
	b.registerProducerLocked(h.group, c)
	code, remark, failed := b.injectedFaultLocked()
	if !failed {
		_, code, remark = b.topicForSendLocked(&h)
	}
	if failed || code != remoting.Success {
		b.mu.Unlock()
		return remoting.NewResponse(req, code, remark)
	}
	switch {
	case tx:
		b.storeHalfLocked(m)
	case !plain:
		b.scheduleLocked(m, lvl)
	default:
		if err := b.putLocked(m); err != nil {
			b.mu.Unlock()
			return remoting.NewResponse(req, remoting.SystemError, err.Error())
		}
	}
	b.mu.Unlock()
	// The store position fields are written once, by putLocked.
	resp := remoting.NewResponse(req, remoting.Success, "")
	addSendResult(resp, offsetMsgID(m.storeHost, m.commitLogOffset), h.queueID, m.queueOffset, uniq)
	return resp
}

// addSendResult fills the SEND reply ext from the stored copy; queueID is
// the queue the producer asked for (the half or schedule copy lives
// elsewhere).
func addSendResult(resp *remoting.Command, msgID string, queueID int32, queueOffset int64, uniq string) {
	resp.Ext["msgId"] = msgID
	resp.Ext["queueId"] = strconv.Itoa(int(queueID))
	resp.Ext["queueOffset"] = strconv.FormatInt(queueOffset, 10)
	if uniq != "" {
		resp.Ext["transactionId"] = uniq
	}
	resp.Ext["MSG_REGION"] = "DefaultRegion"
	resp.Ext["TRACE_ON"] = "true"
}

func (b *broker) storeBatchLocked(req *remoting.Command, h *sendHeader, bornHost netip.AddrPort) *remoting.Command {
	entries, err := decodeBatch(req.Body)
	if err != nil {
		return remoting.NewResponse(req, remoting.MessageIllegal, "bad batch: "+err.Error())
	}
	ids := make([]string, 0, len(entries))
	var first int64 = -1
	for _, e := range entries {
		m := &message{
			topic:          h.topic,
			queueID:        h.queueID,
			flag:           e.flag,
			body:           e.body,
			props:          decodeProperties(e.props),
			sysFlag:        h.sysFlag &^ sysFlagTxMask,
			bornTimestamp:  h.bornTimestamp,
			bornHost:       bornHost,
			reconsumeTimes: h.reconsumeTimes,
		}
		if b.s.opts.ClusterName != "" {
			m.props[propCluster] = b.s.opts.ClusterName
		}
		// Java 4.9 ignores DELAY on batch members; so do we (it stays a
		// property but the member is stored at once).
		if err := b.putLocked(m); err != nil {
			return remoting.NewResponse(req, remoting.SystemError, err.Error())
		}
		if first < 0 {
			first = m.queueOffset
		}
		ids = append(ids, offsetMsgID(m.storeHost, m.commitLogOffset))
	}
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Ext["msgId"] = strings.Join(ids, ",")
	resp.Ext["queueId"] = strconv.Itoa(int(h.queueID))
	resp.Ext["queueOffset"] = strconv.FormatInt(first, 10)
	resp.Ext["MSG_REGION"] = "DefaultRegion"
	resp.Ext["TRACE_ON"] = "true"
	return resp
}

func (b *broker) handleCreateTopic(req *remoting.Command) *remoting.Command {
	name := req.Ext["topic"]
	if name == "" || len(name) > 127 {
		return remoting.NewResponse(req, remoting.SystemError, fmt.Sprintf("topic %q is not valid", name))
	}
	n := int(req.ExtInt64("writeQueueNums", 0))
	if r := int(req.ExtInt64("readQueueNums", 0)); r > n {
		n = r
	}
	if n <= 0 {
		n = 4
	}
	if n > 1024 {
		return remoting.NewResponse(req, remoting.SystemError, fmt.Sprintf("too many queues: %d", n))
	}
	perm := int(req.ExtInt64("perm", permRW))
	b.mu.Lock()
	changed := b.createTopicLocked(name, n, perm)
	b.mu.Unlock()
	if changed {
		b.s.log.Info("topic created", "topic", name, "queues", n)
		b.s.registerSoon()
	}
	return remoting.NewResponse(req, remoting.Success, "")
}

func (b *broker) handleDeleteTopic(req *remoting.Command) *remoting.Command {
	name := req.Ext["topic"]
	b.mu.Lock()
	if b.topics[name] != nil && !isSystemTopic(name) {
		delete(b.topics, name)
	}
	b.mu.Unlock()
	b.s.registerSoon()
	return remoting.NewResponse(req, remoting.Success, "")
}

// handleSubscriptionGroups answers GET_ALL_SUBSCRIPTIONGROUP_CONFIG with
// the groups that ever sent a heartbeat.
func (b *broker) handleSubscriptionGroups(req *remoting.Command) *remoting.Command {
	b.mu.Lock()
	var sb strings.Builder
	sb.WriteString(`{"subscriptionGroupTable":{`)
	i := 0
	for name := range b.groups {
		if i > 0 {
			sb.WriteByte(',')
		}
		i++
		fmt.Fprintf(&sb, `%q:{"groupName":%q,"consumeEnable":true,"consumeFromMinEnable":true,"consumeBroadcastEnable":true,"retryQueueNums":1,"retryMaxTimes":16,"brokerId":0,"whichBrokerWhenConsumeSlowly":1,"notifyConsumerIdsChangedEnable":true}`, name, name)
	}
	b.mu.Unlock()
	fmt.Fprintf(&sb, `},"dataVersion":{"timestamp":%d,"counter":1}}`, time.Now().UnixMilli())
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = []byte(sb.String())
	return resp
}
