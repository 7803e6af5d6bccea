package listener

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// TxSender is the transactional producer (rocketmq.TransactionProducer).
type TxSender interface {
	SendMessageInTransaction(ctx context.Context, msg *primitive.Message) (*primitive.TransactionSendResult, error)
}

// HalfMessages records where each placement's half message is, so that
// its payment can end it directly (halfmsg.Recorder). Record must not
// block.
type HalfMessages interface {
	Record(id uuid.UUID, res *primitive.SendResult)
}

// Placer is the transactional order.Placer: it sends the ORDER_PAID half
// message and lets the Transaction listener run the local transaction.
type Placer struct {
	producer    TxSender // the client's transactional producer
	sender      TxSender // what placements send through: producer, or halfmsg.Sender
	tx          *Transaction
	topic       string
	sendTimeout time.Duration
	halves      HalfMessages // nil: not recorded
}

// NewPlacer returns a Placer sending on topic through producer, whose
// listener must be tx. sendTimeout bounds each half-message send: v2.1.2
// ignores its own SendMsgTimeout option for sync sends (each attempt waits
// up to a hard-coded 3 s), so the bound is put on the send's context.
// halves, if not nil, is told the coordinates of every half message whose
// order was recorded (stored or cached).
func NewPlacer(producer TxSender, tx *Transaction, topic string, sendTimeout time.Duration, halves HalfMessages) (*Placer, error) {
	if producer == nil || tx == nil || topic == "" || sendTimeout <= 0 {
		return nil, errors.New("listener: placer needs a producer, its transaction listener, a topic and a send timeout")
	}
	return &Placer{producer: producer, sender: producer, tx: tx, topic: topic, sendTimeout: sendTimeout, halves: halves}, nil
}

// SendThrough makes placements, and Probe, send through s (halfmsg.Sender,
// on connections of its own) instead of the client's producer, whose
// listener must also be tx. WarmUp still goes through the producer: its
// heartbeats are what brings the check-backs. Call it before the first
// placement.
func (p *Placer) SendThrough(s TxSender) {
	if s != nil {
		p.sender = s
	}
}

// warmUpKeyPrefix marks the probe transaction WarmUp sends.
const warmUpKeyPrefix = "txorder-warmup-"

// WarmUp sends one probe half message that the listener rolls back at
// once. A producer that has never sent is unknown to the brokers: the client
// learns routes, and heartbeats (which is how a broker finds a producer for
// check-backs), only for topics it has sent to. Without this, a restarted
// orderd would not receive the check-backs of the half messages its
// previous run left open until its first placement.
func (p *Placer) WarmUp(ctx context.Context) error { return p.probe(ctx, p.producer) }

// Probe sends the warm-up's probe transaction the way placements send
// (SendThrough): the RocketMQ breaker's test of whether they would pass.
func (p *Placer) Probe(ctx context.Context) error { return p.probe(ctx, p.sender) }

func (p *Placer) probe(ctx context.Context, through TxSender) error {
	msg := primitive.NewMessage(p.topic, []byte("{}"))
	msg.WithKeys([]string{warmUpKeyPrefix + uuid.NewString()})
	res, err := through.SendMessageInTransaction(ctx, msg)
	if err != nil {
		return fmt.Errorf("warm-up send: %w", err)
	}
	if res.Status != primitive.SendOK {
		return fmt.Errorf("warm-up send status %d", res.Status)
	}
	return nil
}

// Place implements order.Placer. It returns OutcomeStored or OutcomeCached
// after the local transaction ran, order.ErrRefused (wrapped) when nothing
// could record the order (wrapping order.ErrNotSent when the half message
// did not go out), or order.ErrConflict.
func (p *Placer) Place(ctx context.Context, o *order.Order) (order.Outcome, error) {
	body, err := json.Marshal(order.EventOf(o))
	if err != nil {
		return "", fmt.Errorf("encode event: %w", err)
	}
	msg := primitive.NewMessage(p.topic, body)
	msg.WithKeys([]string{o.ID.String()})

	pl := p.tx.register(o)
	defer p.tx.unregister(o)
	// A client that hangs up must not abort a placement half-way, so the
	// request's context is not used; the send is bounded by sendTimeout
	// (the client runs the local transaction and END_TRANSACTION without
	// this context) and the local transaction by ExecuteTimeout.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.sendTimeout)
	defer cancel()
	res, err := p.sender.SendMessageInTransaction(sctx, msg)
	p.tx.metrics.halfSent.Inc()
	if err != nil {
		p.tx.metrics.execute.WithLabelValues("not_sent").Inc()
		return "", fmt.Errorf("%w: %w: %w", order.ErrRefused, order.ErrNotSent, err)
	}
	p.tx.metrics.endSent.Inc() // v2.1.2 ends every answered send, whatever its status
	if res.Status != primitive.SendOK || pl.outcome == "" && pl.err == nil {
		// The client rolled the half message back itself (flush or slave
		// timeout) or never called Execute: nothing was written.
		p.tx.metrics.execute.WithLabelValues("not_sent").Inc()
		return "", fmt.Errorf("%w: %w: send status %d", order.ErrRefused, order.ErrNotSent, res.Status)
	}
	if pl.err != nil {
		if errors.Is(pl.err, order.ErrConflict) {
			return "", pl.err
		}
		// Also for ErrOutcomeUnknown: the client cannot be told "accepted",
		// and a retry with the same key will find the order if it exists.
		return "", fmt.Errorf("%w: %w", order.ErrRefused, pl.err)
	}
	if p.halves != nil {
		// Queued, not written here: the placement does not wait on it.
		p.halves.Record(o.ID, res.SendResult)
	}
	return pl.outcome, nil
}
