package rmqtest

import (
	"strconv"

	"github.com/txorder/txorder/internal/remoting"
)

// handleSendBack implements CONSUMER_SEND_MSG_BACK: a consumer could not
// consume a message, so a copy goes to %RETRY%<group> through the delay
// levels, or to %DLQ%<group> once it was reconsumed maxReconsumeTimes.
// The Go client ignores the reply code, so a failure here loses the
// message for the test: it is logged at warn.
func (b *broker) handleSendBack(req *remoting.Command) *remoting.Command {
	group := req.Ext["group"]
	off := req.ExtInt64("offset", -1)
	delayLevel := int(req.ExtInt64("delayLevel", 0))
	maxTimes := int32(req.ExtInt64("maxReconsumeTimes", 16))
	if group == "" {
		return remoting.NewResponse(req, remoting.SystemError, "group is empty")
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	orig := b.commitLog[off]
	if orig == nil {
		b.s.log.Warn("send back of unknown message", "group", group, "commit_log_offset", off, "msg_id", req.Ext["originMsgId"])
		return remoting.NewResponse(req, remoting.SystemError, "look message by offset failed, "+strconv.FormatInt(off, 10))
	}
	m := orig.clone()
	if m.props[propRetryTopic] == "" {
		m.props[propRetryTopic] = orig.topic
	}
	if m.props[propOriginMsgID] == "" {
		m.props[propOriginMsgID] = offsetMsgID(orig.storeHost, orig.commitLogOffset)
	}
	m.reconsumeTimes = orig.reconsumeTimes + 1
	m.preparedTxOffset = 0
	delete(m.props, propDelay)
	if orig.reconsumeTimes >= maxTimes || delayLevel < 0 {
		m.topic = DLQPrefix + group
		m.queueID = 0
		b.ensureTopicLocked(m.topic, 1)
		if err := b.putLocked(m); err != nil {
			return remoting.NewResponse(req, remoting.SystemError, err.Error())
		}
		b.s.log.Info("message moved to dead letter queue", "group", group, "topic", m.topic,
			"msg_id", m.props[propUniqKey], "reconsume_times", orig.reconsumeTimes)
		return remoting.NewResponse(req, remoting.Success, "")
	}
	if delayLevel == 0 {
		delayLevel = 3 + int(orig.reconsumeTimes)
	}
	m.topic = RetryPrefix + group
	m.queueID = 0
	b.ensureTopicLocked(m.topic, 1)
	b.scheduleLocked(m, delayLevel)
	return remoting.NewResponse(req, remoting.Success, "")
}
