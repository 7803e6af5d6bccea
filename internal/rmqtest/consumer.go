package rmqtest

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

type consumerGroup struct {
	members map[string]*member // by clientID
}

type member struct {
	conn             *conn
	lastHeartbeat    time.Time
	messageModel     string
	consumeFromWhere string
	topics           []string
}

type heartbeatData struct {
	ClientID        string `json:"clientID"`
	ProducerDataSet []struct {
		GroupName string `json:"groupName"`
	} `json:"producerDataSet"`
	ConsumerDataSet []struct {
		GroupName           string `json:"groupName"`
		ConsumeType         string `json:"consumeType"`
		MessageModel        string `json:"messageModel"`
		ConsumeFromWhere    string `json:"consumeFromWhere"`
		SubscriptionDataSet []struct {
			Topic string `json:"topic"`
		} `json:"subscriptionDataSet"`
	} `json:"consumerDataSet"`
}

func (b *broker) handleHeartbeat(c *conn, req *remoting.Command) *remoting.Command {
	var hb heartbeatData
	if err := json.Unmarshal(req.Body, &hb); err != nil {
		return remoting.NewResponse(req, remoting.SystemError, "bad heartbeat body: "+err.Error())
	}
	var changed []string
	b.mu.Lock()
	for _, p := range hb.ProducerDataSet {
		b.registerProducerLocked(p.GroupName, c)
	}
	for _, cd := range hb.ConsumerDataSet {
		if cd.GroupName == "" {
			continue
		}
		g := b.groups[cd.GroupName]
		if g == nil {
			g = &consumerGroup{members: map[string]*member{}}
			b.groups[cd.GroupName] = g
		}
		m := g.members[hb.ClientID]
		if m == nil || m.conn != c {
			m = &member{conn: c}
			g.members[hb.ClientID] = m
			changed = append(changed, cd.GroupName)
		}
		m.lastHeartbeat = time.Now()
		m.messageModel = cd.MessageModel
		m.consumeFromWhere = cd.ConsumeFromWhere
		m.topics = m.topics[:0]
		for _, sd := range cd.SubscriptionDataSet {
			m.topics = append(m.topics, sd.Topic)
		}
		b.ensureTopicLocked(RetryPrefix+cd.GroupName, 1)
	}
	notify := b.notifyTargetsLocked(changed)
	b.mu.Unlock()
	for _, g := range changed {
		b.s.log.Info("consumer joined", "group", g, "client_id", hb.ClientID, "remote", c.remote)
	}
	b.sendNotify(notify)
	return remoting.NewResponse(req, remoting.Success, "")
}

func (b *broker) handleUnregisterClient(c *conn, req *remoting.Command) *remoting.Command {
	id := req.Ext["clientID"]
	var changed []string
	b.mu.Lock()
	if pg := req.Ext["producerGroup"]; pg != "" {
		delete(b.producers[pg], c)
	}
	if cg := req.Ext["consumerGroup"]; cg != "" {
		if g := b.groups[cg]; g != nil && g.members[id] != nil {
			delete(g.members, id)
			changed = append(changed, cg)
		}
	}
	notify := b.notifyTargetsLocked(changed)
	b.mu.Unlock()
	b.sendNotify(notify)
	return remoting.NewResponse(req, remoting.Success, "")
}

type notifyTarget struct {
	c     *conn
	group string
}

// notifyTargetsLocked lists the connections of the given groups' members.
func (b *broker) notifyTargetsLocked(groups []string) []notifyTarget {
	var out []notifyTarget
	seen := map[notifyTarget]bool{}
	for _, name := range groups {
		g := b.groups[name]
		if g == nil {
			continue
		}
		for _, m := range g.members {
			t := notifyTarget{m.conn, name}
			if !seen[t] && !m.conn.closed() {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// sendNotify sends NOTIFY_CONSUMER_IDS_CHANGED (one-way) so the members
// rebalance now instead of on their 20 s timer.
func (b *broker) sendNotify(targets []notifyTarget) {
	for _, t := range targets {
		cmd := remoting.NewRequest(remoting.NotifyConsumerIDsChanged, map[string]string{"consumerGroup": t.group}, nil)
		cmd.Language = "JAVA"
		cmd.Flag = remoting.FlagOneway
		_ = t.c.send(cmd)
	}
}

func (b *broker) consumerIDsLocked(group string) []string {
	g := b.groups[group]
	if g == nil {
		return nil
	}
	ids := make([]string, 0, len(g.members))
	for id, m := range g.members {
		if !m.conn.closed() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (b *broker) handleConsumerList(req *remoting.Command) *remoting.Command {
	b.mu.Lock()
	ids := b.consumerIDsLocked(req.Ext["consumerGroup"])
	b.mu.Unlock()
	if len(ids) == 0 {
		return remoting.NewResponse(req, remoting.SystemError, "no consumer for this group, "+req.Ext["consumerGroup"])
	}
	body, _ := json.Marshal(struct {
		ConsumerIDList []string `json:"consumerIdList"`
	}{ids})
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = body
	return resp
}

func (b *broker) handleQueryOffset(req *remoting.Command) *remoting.Command {
	k := offsetKey{req.Ext["consumerGroup"], req.Ext["topic"], int32(req.ExtInt64("queueId", 0))}
	b.mu.Lock()
	off, ok := b.offsets[k]
	var minOff int64
	if t := b.topics[k.topic]; t != nil && int(k.queueID) < len(t.queues) && k.queueID >= 0 {
		minOff = t.queues[k.queueID].minOffset()
	}
	b.mu.Unlock()
	if !ok {
		// Java: no stored offset while the queue still starts at 0 in
		// memory means "start at 0", so a new group reads the whole queue.
		if b.s.opts.StrictConsumerOffset || minOff > 0 {
			return remoting.NewResponse(req, remoting.QueryNotFound, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
		}
		off = 0
	}
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Ext["offset"] = strconv.FormatInt(off, 10)
	return resp
}

func (b *broker) handleUpdateOffset(req *remoting.Command) *remoting.Command {
	k := offsetKey{req.Ext["consumerGroup"], req.Ext["topic"], int32(req.ExtInt64("queueId", 0))}
	off := req.ExtInt64("commitOffset", -1)
	if k.group == "" || off < 0 {
		return remoting.NewResponse(req, remoting.SystemError, "bad offset update")
	}
	b.mu.Lock()
	b.offsets[k] = off
	b.mu.Unlock()
	return remoting.NewResponse(req, remoting.Success, "")
}

func (b *broker) handleMinMaxOffset(req *remoting.Command) *remoting.Command {
	var off int64
	b.mu.Lock()
	if t := b.topics[req.Ext["topic"]]; t != nil {
		if qid := int(req.ExtInt64("queueId", 0)); qid >= 0 && qid < len(t.queues) {
			if req.Code == remoting.GetMaxOffset {
				off = t.queues[qid].maxOffset()
			} else {
				off = t.queues[qid].minOffset()
			}
		}
	}
	b.mu.Unlock()
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Ext["offset"] = strconv.FormatInt(off, 10)
	return resp
}

func (b *broker) handleSearchOffset(req *remoting.Command) *remoting.Command {
	ts := req.ExtInt64("timestamp", 0)
	var off int64
	b.mu.Lock()
	if t := b.topics[req.Ext["topic"]]; t != nil {
		if qid := int(req.ExtInt64("queueId", 0)); qid >= 0 && qid < len(t.queues) {
			q := t.queues[qid]
			off = q.base + int64(sort.Search(len(q.msgs), func(i int) bool { return q.msgs[i].storeTimestamp >= ts }))
		}
	}
	b.mu.Unlock()
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Ext["offset"] = strconv.FormatInt(off, 10)
	return resp
}

// Orderly consumers lock queues (LOCK_BATCH_MQ) before consuming them.

type lockKey struct {
	group, topic, brokerName string
	queueID                  int
}

type lockEntry struct {
	clientID string
	expires  time.Time
}

type mqBody struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

type lockBody struct {
	ConsumerGroup string   `json:"consumerGroup"`
	ClientID      string   `json:"clientId"`
	MQSet         []mqBody `json:"mqSet"`
}

func (b *broker) handleLock(req *remoting.Command) *remoting.Command {
	var lb lockBody
	if err := json.Unmarshal(req.Body, &lb); err != nil {
		return remoting.NewResponse(req, remoting.SystemError, "bad lock body: "+err.Error())
	}
	now := time.Now()
	ok := []mqBody{}
	b.mu.Lock()
	for _, mq := range lb.MQSet {
		k := lockKey{lb.ConsumerGroup, mq.Topic, mq.BrokerName, mq.QueueID}
		e, held := b.locks[k]
		if !held || e.clientID == lb.ClientID || now.After(e.expires) {
			b.locks[k] = lockEntry{clientID: lb.ClientID, expires: now.Add(b.s.opts.LockLease)}
			ok = append(ok, mq)
		}
	}
	b.mu.Unlock()
	body, _ := json.Marshal(struct {
		LockOKMQSet []mqBody `json:"lockOKMQSet"`
	}{ok})
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = body
	return resp
}

func (b *broker) handleUnlock(req *remoting.Command) *remoting.Command {
	var lb lockBody
	if err := json.Unmarshal(req.Body, &lb); err != nil {
		return remoting.NewResponse(req, remoting.SystemError, "bad unlock body: "+err.Error())
	}
	b.mu.Lock()
	for _, mq := range lb.MQSet {
		k := lockKey{lb.ConsumerGroup, mq.Topic, mq.BrokerName, mq.QueueID}
		if e, held := b.locks[k]; held && e.clientID == lb.ClientID {
			delete(b.locks, k)
		}
	}
	b.mu.Unlock()
	return remoting.NewResponse(req, remoting.Success, "")
}
