package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// DLQTopic returns the dead letter topic the broker fills for group.
func DLQTopic(group string) string { return "%DLQ%" + group }

// DefaultDeadLetterGroup is the consumer group of the dead letter recorder
// of the fulfillment service.
const DefaultDeadLetterGroup = "fulfillment-dlq"

// FailureReasons tells why a message last failed, when known
// (*Fulfillment in the same process).
type FailureReasons interface {
	LastFailure(msgID string) (string, bool)
}

// DeadLetterRecorder is the callback of the consumer on %DLQ%<group>: it
// stores each message the broker gave up on in dead_letters, idempotently
// (a redelivery only moves last_seen_at), and acknowledges it only after
// that write. `ordertool dlq` lists and replays them.
type DeadLetterRecorder struct {
	store   *DeadLetterStore
	group   string
	reasons FailureReasons
	metrics *FulfillmentMetrics
	logger  *slog.Logger
	timeout time.Duration
	now     func() time.Time
}

// NewDeadLetterRecorder returns a recorder for the dead letters of group.
// reasons and metrics may be nil; timeout bounds each write (0: 5s).
func NewDeadLetterRecorder(store *DeadLetterStore, group string, reasons FailureReasons, metrics *FulfillmentMetrics, logger *slog.Logger, timeout time.Duration) (*DeadLetterRecorder, error) {
	if store == nil || group == "" || logger == nil {
		return nil, errors.New("listener: dead letter recorder needs a store, a group and a logger")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if metrics == nil {
		metrics = NewFulfillmentMetrics(nil)
	}
	return &DeadLetterRecorder{store: store, group: group, reasons: reasons, metrics: metrics,
		logger: logger.With("group", group, "topic", DLQTopic(group)), timeout: timeout, now: time.Now}, nil
}

// Consume records a batch of dead letters; any failure retries the batch
// (already recorded ones are recognised on redelivery).
func (r *DeadLetterRecorder) Consume(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	for _, m := range msgs {
		if err := r.record(ctx, m); err != nil {
			r.logger.Warn("dead letter not recorded, retry later", "msg_id", m.MsgId, "error", err)
			return consumer.ConsumeRetryLater, nil
		}
	}
	return consumer.ConsumeSuccess, nil
}

func (r *DeadLetterRecorder) record(ctx context.Context, m *primitive.MessageExt) error {
	// The client's callback context carries no deadline: bound the write.
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	reason := fmt.Sprintf("broker gave up after %d failed deliveries", m.ReconsumeTimes)
	if r.reasons != nil {
		if last, ok := r.reasons.LastFailure(m.MsgId); ok {
			reason += "; last error: " + last
		} else {
			reason += "; last error not known to this process (see the fulfillmentd log for msg_id)"
		}
	}
	d := DeadLetter{Group: r.group, OriginalMsgID: m.MsgId, Key: m.GetKeys(), Body: m.Body,
		ReconsumeTimes: int(m.ReconsumeTimes), Reason: reason}
	inserted, err := r.store.Record(ctx, d, r.now())
	if err != nil {
		return err
	}
	if inserted {
		r.metrics.deadLetters.WithLabelValues(sourceDLQ).Inc()
		r.logger.Warn("dead letter recorded", "msg_id", m.MsgId, "order_id", m.GetKeys(), "reconsume_times", m.ReconsumeTimes, "reason", reason)
	} else {
		r.logger.Info("dead letter seen again", "msg_id", m.MsgId, "order_id", m.GetKeys())
	}
	return nil
}
