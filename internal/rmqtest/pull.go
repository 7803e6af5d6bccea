package rmqtest

import (
	"strconv"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// Pull request sysFlag bits (Java PullSysFlag).
const (
	pullCommitOffset = 0x1
	pullSuspend      = 0x2
)

const (
	maxPullMessages = 32
	maxPullBytes    = 256 << 10 // Java maxTransferBytesOnMessageInMemory
	maxHold         = 25 * time.Second
)

func (b *broker) handlePull(c *conn, req *remoting.Command) *remoting.Command {
	group := req.Ext["consumerGroup"]
	topicName := req.Ext["topic"]
	qid := int32(req.ExtInt64("queueId", 0))
	offset := req.ExtInt64("queueOffset", 0)
	maxNums := int(req.ExtInt64("maxMsgNums", maxPullMessages))
	if maxNums <= 0 || maxNums > maxPullMessages {
		maxNums = maxPullMessages
	}
	sysFlag := req.ExtInt64("sysFlag", 0)
	hold := time.Duration(req.ExtInt64("suspendTimeoutMillis", 0)) * time.Millisecond
	if hold > maxHold {
		hold = maxHold
	}
	if sysFlag&pullSuspend == 0 {
		hold = 0
	}

	b.mu.Lock()
	if sysFlag&pullCommitOffset != 0 && group != "" {
		if co := req.ExtInt64("commitOffset", -1); co >= 0 {
			b.offsets[offsetKey{group, topicName, qid}] = co
		}
	}
	var deadline time.Time
	for {
		t := b.topics[topicName]
		if t == nil {
			b.mu.Unlock()
			return remoting.NewResponse(req, remoting.TopicNotExist, "topic["+topicName+"] not exist, apply first please!")
		}
		if t.perm&permRead == 0 {
			b.mu.Unlock()
			return remoting.NewResponse(req, remoting.NoPermission, "the topic["+topicName+"] pulling message is forbidden")
		}
		if qid < 0 || int(qid) >= t.readQ || int(qid) >= len(t.queues) {
			b.mu.Unlock()
			return remoting.NewResponse(req, remoting.SystemError, "queueId["+strconv.Itoa(int(qid))+"] is illegal")
		}
		q := t.queues[qid]
		minOff, maxOff := q.minOffset(), q.maxOffset()
		switch {
		case offset >= minOff && offset < maxOff:
			// Collect the stored encodings under the lock (they are never
			// modified once stored) and copy them out after it.
			var encs [maxPullMessages][]byte
			n, size := 0, 0
			for end := offset; end < maxOff && n < maxNums; end++ {
				enc := q.at(end).encoded()
				if n > 0 && size+len(enc) > maxPullBytes {
					break
				}
				encs[n] = enc
				size += len(enc)
				n++
			}
			b.mu.Unlock()
			body := make([]byte, 0, size)
			for _, enc := range encs[:n] {
				body = append(body, enc...)
			}
			end := offset + int64(n)
			resp := remoting.NewResponse(req, remoting.Success, "FOUND")
			resp.Body = body
			setPullExt(resp, end, minOff, maxOff)
			return resp
		case offset == maxOff:
			if hold <= 0 || (!deadline.IsZero() && !time.Now().Before(deadline)) {
				b.mu.Unlock()
				resp := remoting.NewResponse(req, remoting.PullNotFound, "NO_NEW_MESSAGE")
				setPullExt(resp, offset, minOff, maxOff)
				return resp
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(hold)
			}
			wake := q.wait()
			b.mu.Unlock()
			timer := time.NewTimer(time.Until(deadline))
			select {
			case <-wake:
			case <-timer.C:
			case <-c.done:
				timer.Stop()
				return nil
			}
			timer.Stop()
			b.mu.Lock()
		default:
			// Out of range: below the retained messages or beyond the end.
			next, remark := maxOff, "OFFSET_OVERFLOW_BADLY"
			if offset < minOff {
				next, remark = minOff, "OFFSET_TOO_SMALL"
			}
			b.mu.Unlock()
			resp := remoting.NewResponse(req, remoting.PullOffsetMoved, remark)
			setPullExt(resp, next, minOff, maxOff)
			return resp
		}
	}
}

func setPullExt(resp *remoting.Command, next, minOff, maxOff int64) {
	resp.Ext["nextBeginOffset"] = strconv.FormatInt(next, 10)
	resp.Ext["minOffset"] = strconv.FormatInt(minOff, 10)
	resp.Ext["maxOffset"] = strconv.FormatInt(maxOff, 10)
	resp.Ext["suggestWhichBrokerId"] = "0"
}
