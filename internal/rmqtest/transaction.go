package rmqtest

import (
	"slices"
	"strconv"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// END_TRANSACTION commitOrRollback values (Java MessageSysFlag).
const (
	txUnknown  = 0
	txCommit   = 8
	txRollback = 12
)

type txState int

const (
	txPending txState = iota
	txCommitted
	txRolledBack
	txDiscarded
)

// halfTx is one transaction: its half message (stored in HalfTopic) and
// what became of it. The record stays in place across checks: Java re-puts
// a copy per check, which the client cannot observe, so every check names
// the same offsets.
type halfTx struct {
	half   *message
	group  string
	state  txState
	checks int
}

// storeHalfLocked stores m as a half message: invisible, in HalfTopic
// queue 0, with REAL_TOPIC/REAL_QID recorded.
//
// DELAY is stripped from half messages, as the Java client does before it
// sends one (the Go client keeps it, and a real 4.9 broker would then
// mis-route the committed message): neither the half nor the committed
// message is delayed.
func (b *broker) storeHalfLocked(m *message) {
	m.props[propRealTopic] = m.topic
	m.props[propRealQID] = strconv.Itoa(int(m.queueID))
	delete(m.props, propDelay)
	m.sysFlag &^= sysFlagTxMask
	m.topic = HalfTopic
	m.queueID = 0
	m.enc = nil
	_ = b.putLocked(m) // HalfTopic always exists
	tx := &halfTx{half: m, group: m.props[propPGroup]}
	b.txs[m.commitLogOffset] = tx
	b.pending[m.commitLogOffset] = tx
	if k := m.props[propUniqKey]; k != "" {
		b.txByKey[k] = tx
	}
}

// forgetResolvedTxLocked drops the record of a finished transaction whose
// half message retention forgot; open transactions stay.
func (b *broker) forgetResolvedTxLocked(off int64) {
	tx := b.txs[off]
	if tx == nil || tx.state == txPending {
		return
	}
	delete(b.txs, off)
	if k := tx.half.props[propUniqKey]; b.txByKey[k] == tx {
		delete(b.txByKey, k)
	}
}

func (b *broker) handleEndTransaction(c *conn, req *remoting.Command) *remoting.Command {
	group := req.Ext["producerGroup"]
	off := req.ExtInt64("commitLogOffset", -1)
	decision := int(req.ExtInt64("commitOrRollback", -1))
	fromCheck := req.ExtBool("fromTransactionCheck")
	msgID := req.Ext["msgId"]
	log := b.s.log.With("group", group, "msg_id", msgID, "from_check", fromCheck)

	b.mu.Lock()
	b.registerProducerLocked(group, c)
	if b.faults.dropEnds > 0 {
		b.faults.dropEnds--
		b.mu.Unlock()
		log.Info("transaction decision dropped by fault injection", "decision", decision)
		return nil
	}
	tx := b.txs[off]
	if tx == nil && msgID != "" {
		tx = b.txByKey[msgID]
	}
	if tx == nil {
		b.mu.Unlock()
		log.Warn("transaction decision for unknown half message", "commit_log_offset", off, "decision", decision)
		return remoting.NewResponse(req, remoting.SystemError, "Find prepared transaction message failed")
	}
	if tx.group != group {
		b.mu.Unlock()
		log.Warn("transaction decision from another producer group", "want_group", tx.group)
		return remoting.NewResponse(req, remoting.SystemError, "The producer group wrong")
	}
	topic := tx.half.props[propRealTopic]
	log = log.With("topic", topic)
	if tx.state != txPending {
		b.mu.Unlock()
		log.Info("transaction decision ignored, already resolved", "decision", decision, "state", tx.state)
		return remoting.NewResponse(req, remoting.Success, "")
	}
	switch decision {
	case txUnknown:
		b.mu.Unlock()
		log.Info("transaction unknown, will check back")
		return nil // Java sends no response for UNKNOWN
	case txCommit:
		m := tx.half.clone()
		m.topic = topic
		qid, _ := strconv.Atoi(m.props[propRealQID])
		m.queueID = int32(qid)
		delete(m.props, propRealTopic)
		delete(m.props, propRealQID)
		delete(m.props, propTranMsg)
		m.sysFlag = m.sysFlag&^sysFlagTxMask | sysFlagTxCommit
		m.preparedTxOffset = tx.half.commitLogOffset
		if err := b.putLocked(m); err != nil {
			b.mu.Unlock()
			log.Warn("transaction commit failed", "err", err)
			return remoting.NewResponse(req, remoting.SystemError, err.Error())
		}
		tx.state = txCommitted
		delete(b.pending, tx.half.commitLogOffset)
		b.mu.Unlock()
		log.Info("transaction committed", "queue_id", qid, "queue_offset", m.queueOffset)
	case txRollback:
		tx.state = txRolledBack
		delete(b.pending, tx.half.commitLogOffset)
		b.mu.Unlock()
		log.Info("transaction rolled back")
	default:
		b.mu.Unlock()
		return remoting.NewResponse(req, remoting.SystemError, "unknown commitOrRollback value "+strconv.Itoa(decision))
	}
	return remoting.NewResponse(req, remoting.Success, "")
}

// checkLoop runs a check round every CheckInterval until stop is closed.
func (s *Server) checkLoop(stop <-chan struct{}) {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.checkRound()
		}
	}
}

type checkRequest struct {
	c   *conn
	cmd *remoting.Command
}

// checkRound sends one CHECK_TRANSACTION_STATE per pending transaction old
// enough to be checked, and moves transactions checked CheckMax times to
// CheckMaxTopic.
func (s *Server) checkRound() {
	b := s.broker
	if b == nil || !s.brokerEP.isRunning() {
		return
	}
	now := time.Now().UnixMilli()
	var out []checkRequest
	b.mu.Lock()
	// Oldest first, as Java walks the half queue.
	offs := make([]int64, 0, len(b.pending))
	for off := range b.pending {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		tx := b.pending[off]
		h := tx.half
		immunity := s.opts.TransactionTimeout.Milliseconds()
		if v, err := strconv.ParseInt(h.props[propCheckImmunity], 10, 64); err == nil && v >= 0 {
			immunity = v * 1000
		}
		if now-h.storeTimestamp < immunity {
			continue
		}
		if tx.checks >= s.opts.CheckMax {
			d := h.clone()
			d.topic = CheckMaxTopic
			d.queueID = 0
			_ = b.putLocked(d) // CheckMaxTopic always exists
			tx.state = txDiscarded
			delete(b.pending, h.commitLogOffset)
			s.log.Info("transaction discarded after check max", "group", tx.group, "msg_id", h.props[propUniqKey],
				"topic", h.props[propRealTopic], "checks", tx.checks)
			continue
		}
		// Java counts the check even when no producer is connected.
		tx.checks++
		h.props[propCheckTimes] = strconv.Itoa(tx.checks)
		h.enc = nil
		c := b.producerConnLocked(tx.group)
		if c == nil {
			s.log.Debug("no producer connection for check", "group", tx.group, "msg_id", h.props[propUniqKey])
			continue
		}
		out = append(out, checkRequest{c: c, cmd: b.checkCommandLocked(h)})
	}
	b.mu.Unlock()
	for _, r := range out {
		_ = r.c.send(r.cmd)
	}
}

// checkCommandLocked builds CHECK_TRANSACTION_STATE (one-way) for a half
// message; the body names the real topic and queue.
func (b *broker) checkCommandLocked(h *message) *remoting.Command {
	qid, _ := strconv.Atoi(h.props[propRealQID])
	body := h.encodeAs(nil, h.props[propRealTopic], int32(qid))
	h.enc = nil
	key := h.props[propUniqKey]
	cmd := remoting.NewRequest(remoting.CheckTransactionState, map[string]string{
		"tranStateTableOffset": strconv.FormatInt(h.queueOffset, 10),
		"commitLogOffset":      strconv.FormatInt(h.commitLogOffset, 10),
		"msgId":                key,
		"transactionId":        key,
		"offsetMsgId":          offsetMsgID(h.storeHost, h.commitLogOffset),
	}, body)
	cmd.Language = "JAVA"
	cmd.Flag = remoting.FlagOneway
	return cmd
}
