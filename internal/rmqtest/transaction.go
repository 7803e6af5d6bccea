package rmqtest

import (
	"slices"
	"strconv"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// END_TRANSACTION commitOrRollback values (Java MessageSysFlag).
const (
	txUnknown  = remoting.TransactionNotType
	txCommit   = remoting.TransactionCommitType
	txRollback = remoting.TransactionRollbackType
)

type txState int

const (
	txPending txState = iota
	txCommitted
	txRolledBack
	txDiscarded
)

func (s txState) String() string {
	switch s {
	case txPending:
		return "pending"
	case txCommitted:
		return "committed"
	case txRolledBack:
		return "rolled_back"
	case txDiscarded:
		return "discarded"
	}
	return "unknown"
}

// halfTx is one transaction: its half message (stored in HalfTopic), the
// copy the next check names, and what became of it.
//
// Like Java, every check re-puts a copy of the half message at the end of
// HalfTopic and names the copy's offsets (TransactionalMessageServiceImpl
// .check → putBackHalfMsgQueue, rocketmq-all-4.9.4
// broker/src/main/java/org/apache/rocketmq/broker/transaction/queue/TransactionalMessageServiceImpl.java:226-230,
// 100-108). Only an END_TRANSACTION for the live copy ends the
// transaction; one for an earlier copy (the original's offsets, say) is
// applied to that copy — a COMMIT writes the message — while the live copy
// stays pending and is checked again, exactly as a Java broker's op
// message marks only the queue offset it names.
type halfTx struct {
	half   *message
	live   *message // the latest copy: half until the first check
	group  string
	state  txState
	checks int
	// commits counts the COMMITs that wrote the message: a real broker
	// writes one copy per COMMIT, whatever came before.
	commits int
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
	tx := &halfTx{half: m, live: m, group: m.props[propPGroup]}
	b.txs[m.commitLogOffset] = tx
	b.pending[m.commitLogOffset] = tx
}

// forgetResolvedTxLocked drops the record of a half message (or one of
// its copies) that retention forgot; an open transaction keeps its first
// and live copies.
func (b *broker) forgetResolvedTxLocked(off int64) {
	tx := b.txs[off]
	if tx == nil || tx.state == txPending && (off == tx.half.commitLogOffset || off == tx.live.commitLogOffset) {
		return
	}
	delete(b.txs, off)
}

// recheckLocked does what a Java check does to a transaction: counts the
// check, re-puts the live copy at the end of HalfTopic (the copy becomes
// live) and returns the CHECK_TRANSACTION_STATE naming it, or nil when no
// producer of the group is connected to the master (the copy is made
// anyway, as in Java).
func (b *broker) recheckLocked(tx *halfTx) (*conn, *remoting.Command) {
	tx.checks++
	cp := tx.live.clone()
	cp.props[propCheckTimes] = strconv.Itoa(tx.checks)
	_ = b.putLocked(cp) // HalfTopic always exists
	b.txs[cp.commitLogOffset] = tx
	tx.live = cp
	c := b.producerConnLocked(tx.group)
	if c == nil {
		return nil, nil
	}
	return c, b.checkCommandLocked(cp)
}

// endTxHeader is END_TRANSACTION's header as a Java broker decodes it: a
// field that is missing or does not parse is left null, not refused
// (RemotingCommand.decodeCommandCustomHeader logs and skips it,
// rocketmq-all-4.9.4
// remoting/src/main/java/org/apache/rocketmq/remoting/protocol/RemotingCommand.java:274-305),
// and fails later where it is used.
type endTxHeader struct {
	group                  string
	hasGroup               bool
	stateOff, logOff       int64
	hasStateOff, hasLogOff bool
	decision               int
	hasDecision            bool
	fromCheck              bool
	msgID                  string
}

func parseEndTxHeader(req *remoting.Command) endTxHeader {
	var h endTxHeader
	h.group, h.hasGroup = req.Ext["producerGroup"]
	parse := func(key string) (int64, bool) {
		v, ok := req.Ext[key]
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	h.stateOff, h.hasStateOff = parse("tranStateTableOffset")
	h.logOff, h.hasLogOff = parse("commitLogOffset")
	d, ok := parse("commitOrRollback")
	h.decision, h.hasDecision = int(d), ok && d >= -1<<31 && d < 1<<31
	h.fromCheck = req.ExtBool("fromTransactionCheck") // Boolean.parseBoolean: anything else is false
	h.msgID = req.Ext["msgId"]
	return h
}

// npe is the remark of the SYSTEM_ERROR a Java broker answers when a null
// header field is unboxed (processRequestCommand's catch-all, rocketmq-all-4.9.4
// remoting/src/main/java/org/apache/rocketmq/remoting/netty/NettyRemotingAbstract.java:233-242).
const npe = "java.lang.NullPointerException"

// handleEndTransaction follows Java's EndTransactionProcessor.processRequest
// (rocketmq-all-4.9.4
// broker/src/main/java/org/apache/rocketmq/broker/processor/EndTransactionProcessor.java:54-158),
// whatever connection the request comes on: a slave refuses it; UNKNOWN
// gets no answer; the half message is found by commitLogOffset alone and
// checkPrepareMessage (:165-193) compares the producer group, the queue
// offset and the commit-log offset; a COMMIT writes the message to its
// real topic every time it is accepted, so a second COMMIT writes a
// duplicate (TransactionalMessageServiceImpl.commitMessage only looks the
// half up, broker/.../transaction/queue/TransactionalMessageServiceImpl.java:453-480).
func (b *broker) handleEndTransaction(c *conn, req *remoting.Command) *remoting.Command {
	h := parseEndTxHeader(req)
	log := b.s.log.With("group", h.group, "msg_id", h.msgID, "from_check", h.fromCheck, "remote", c.remote)

	// EndTransactionRequestHeader.checkFields runs inside the decode,
	// before the role check.
	switch {
	case !h.hasDecision:
		return remoting.NewResponse(req, remoting.SystemError, npe)
	case h.decision != txUnknown && h.decision != txCommit && h.decision != txRollback:
		return remoting.NewResponse(req, remoting.SystemError, "commitOrRollback field wrong")
	}
	if !b.s.isMaster(c.ep) {
		log.Warn("end transaction refused: this broker is a slave")
		return remoting.NewResponse(req, remoting.SlaveNotAvailable, "")
	}
	if h.decision == txUnknown {
		log.Info("transaction unknown, will check back")
		return nil // Java sends no response for UNKNOWN
	}
	if !h.hasLogOff {
		return remoting.NewResponse(req, remoting.SystemError, npe)
	}

	b.mu.Lock()
	if b.faults.dropEnds > 0 {
		b.faults.dropEnds--
		b.mu.Unlock()
		log.Info("transaction decision dropped by fault injection", "decision", h.decision)
		return nil
	}
	tx := b.txs[h.logOff]
	var half *message // the copy at that offset
	switch {
	case tx == nil:
	case tx.live.commitLogOffset == h.logOff:
		half = tx.live
	case tx.half.commitLogOffset == h.logOff:
		half = tx.half
	default:
		half = b.commitLog[h.logOff]
	}
	if half == nil {
		m := b.commitLog[h.logOff]
		b.mu.Unlock()
		if m == nil {
			log.Warn("transaction decision for unknown half message", "commit_log_offset", h.logOff, "decision", h.decision)
			return remoting.NewResponse(req, remoting.SystemError, "Find prepared transaction message failed")
		}
		// Java reads whatever message is at that offset and fails on it
		// further down (a NullPointerException for most); only the
		// producer-group answer is reproduced.
		if m.props[propPGroup] != h.group {
			return remoting.NewResponse(req, remoting.SystemError, "The producer group wrong")
		}
		return remoting.NewResponse(req, remoting.SystemError, "rmqtest: the message at that commit log offset is not a half message")
	}
	live := half == tx.live
	switch {
	case !h.hasGroup || tx.group != h.group:
		b.mu.Unlock()
		log.Warn("transaction decision from another producer group", "want_group", tx.group)
		return remoting.NewResponse(req, remoting.SystemError, "The producer group wrong")
	case !h.hasStateOff:
		b.mu.Unlock()
		return remoting.NewResponse(req, remoting.SystemError, npe)
	case half.queueOffset != h.stateOff:
		b.mu.Unlock()
		log.Warn("transaction decision with the wrong queue offset", "got", h.stateOff, "want", half.queueOffset)
		return remoting.NewResponse(req, remoting.SystemError, "The transaction state table offset wrong")
	case half.commitLogOffset != h.logOff:
		b.mu.Unlock()
		return remoting.NewResponse(req, remoting.SystemError, "The commit log offset wrong")
	}
	topic := half.props[propRealTopic]
	log = log.With("topic", topic, "key", half.props[propKeys])
	if h.decision == txRollback {
		// Java writes an op message and nothing else: a rollback after a
		// commit leaves the committed message where it is, and one for an
		// earlier copy leaves the live copy to its next check.
		if tx.state == txPending && live {
			tx.state = txRolledBack
			delete(b.pending, tx.half.commitLogOffset)
		}
		b.mu.Unlock()
		log.Info("transaction rolled back", "live_copy", live)
		return remoting.NewResponse(req, remoting.Success, "")
	}
	m := half.clone()
	m.topic = topic
	qid, _ := strconv.Atoi(m.props[propRealQID])
	m.queueID = int32(qid)
	delete(m.props, propRealTopic)
	delete(m.props, propRealQID)
	delete(m.props, propTranMsg)
	m.sysFlag = m.sysFlag&^sysFlagTxMask | sysFlagTxCommit
	m.preparedTxOffset = half.commitLogOffset
	delete(m.props, propCheckTimes)
	if err := b.putLocked(m); err != nil {
		b.mu.Unlock()
		log.Warn("transaction commit failed", "err", err)
		return remoting.NewResponse(req, remoting.SystemError, err.Error())
	}
	prior := tx.state
	tx.commits++
	commits, qoff := tx.commits, m.queueOffset
	if tx.state == txPending && live {
		tx.state = txCommitted
		delete(b.pending, tx.half.commitLogOffset)
	}
	b.mu.Unlock()
	switch {
	case commits > 1:
		log.Warn("transaction committed again: another copy written", "queue_id", qid, "queue_offset", qoff,
			"commits", commits, "state_before", prior, "live_copy", live)
	case !live && prior == txPending:
		log.Info("transaction committed on an earlier copy of its half message; the live copy will be checked again",
			"queue_id", qid, "queue_offset", qoff)
	default:
		log.Info("transaction committed", "queue_id", qid, "queue_offset", qoff)
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
	if b == nil || !s.masterEP().isRunning() {
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
		h := tx.live
		immunity := s.opts.TransactionTimeout.Milliseconds()
		if v, err := strconv.ParseInt(h.props[propCheckImmunity], 10, 64); err == nil && v >= 0 {
			immunity = v * 1000
		}
		// Java measures from the birth, which every copy keeps.
		if now-h.bornTimestamp < immunity {
			continue
		}
		if tx.checks >= s.opts.CheckMax {
			d := h.clone()
			d.topic = CheckMaxTopic
			d.queueID = 0
			_ = b.putLocked(d) // CheckMaxTopic always exists
			tx.state = txDiscarded
			delete(b.pending, off)
			s.log.Info("transaction discarded after check max", "group", tx.group, "msg_id", h.props[propUniqKey],
				"topic", h.props[propRealTopic], "checks", tx.checks)
			continue
		}
		// Java counts the check (and re-puts the copy) even when no
		// producer is connected.
		c, cmd := b.recheckLocked(tx)
		if c == nil {
			s.log.Debug("no producer connection for check", "group", tx.group, "msg_id", h.props[propUniqKey])
			continue
		}
		out = append(out, checkRequest{c: c, cmd: cmd})
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
