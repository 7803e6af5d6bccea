package rmqtest

import (
	"container/heap"
	"strconv"
	"time"
)

// maxDelayLevel is the number of delay levels (Java messageDelayLevel).
const maxDelayLevel = 18

// defaultDelayLevels is Java's "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m
// 10m 20m 30m 1h 2h"; level n is entry n-1.
var defaultDelayLevels = [maxDelayLevel]time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// DelayLevel returns how long delay level n (1..18, clamped) lasts on this
// server: Java's table times DelayScale.
func (s *Server) DelayLevel(n int) time.Duration {
	n = min(max(n, 1), maxDelayLevel)
	return time.Duration(float64(defaultDelayLevels[n-1]) * s.opts.DelayScale)
}

type delayed struct {
	due time.Time
	seq int64
	m   *message
}

type delayHeap []delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scheduleLocked stores m in ScheduleTopic queue level-1, with REAL_TOPIC
// and REAL_QID recorded, and queues its delivery to the real topic.
func (b *broker) scheduleLocked(m *message, level int) {
	level = min(max(level, 1), maxDelayLevel)
	m.props[propRealTopic] = m.topic
	m.props[propRealQID] = strconv.Itoa(int(m.queueID))
	m.props[propDelay] = strconv.Itoa(level)
	m.topic = ScheduleTopic
	m.queueID = int32(level - 1)
	m.enc = nil
	_ = b.putLocked(m) // ScheduleTopic has every level's queue
	b.delaySeq++
	heap.Push(&b.delays, delayed{due: time.Now().Add(b.s.DelayLevel(level)), seq: b.delaySeq, m: m})
	select {
	case b.delayWake <- struct{}{}:
	default:
	}
}

// deliverDueLocked re-puts every due delayed message to its real topic,
// without DELAY, and returns when the next one is due (zero if none).
func (b *broker) deliverDueLocked(now time.Time) time.Time {
	for b.delays.Len() > 0 {
		d := b.delays[0]
		if d.due.After(now) {
			return d.due
		}
		heap.Pop(&b.delays)
		m := d.m.clone()
		m.topic = m.props[propRealTopic]
		qid, _ := strconv.Atoi(m.props[propRealQID])
		m.queueID = int32(qid)
		delete(m.props, propDelay)
		if err := b.putLocked(m); err != nil {
			b.s.log.Warn("dropping delayed message", "topic", m.topic, "msg_id", m.props[propUniqKey], "err", err)
		}
	}
	return time.Time{}
}

// delayLoop delivers delayed messages when they are due.
func (s *Server) delayLoop(stop <-chan struct{}) {
	defer s.bg.Done()
	b := s.broker
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		b.mu.Lock()
		next := b.deliverDueLocked(time.Now())
		b.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-b.delayWake:
		case <-timer.C:
		}
	}
}
