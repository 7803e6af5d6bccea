package listener

import (
	"context"
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// TrackerGroup is the consumer group of the publish tracker.
const TrackerGroup = "order-publish-tracker"

// Tracker consumes ORDER_PAID (group order-publish-tracker) and records in
// orders.published_at that each order's event really reached the topic.
// The reconciler republishes paid orders that never get there.
type Tracker struct {
	store   *order.Store
	timeout time.Duration
	logger  *slog.Logger
}

// NewTracker returns a Tracker; timeout bounds one batch.
func NewTracker(store *order.Store, timeout time.Duration, logger *slog.Logger) *Tracker {
	return &Tracker{store: store, timeout: timeout, logger: logger.With("component", "publish-tracker")}
}

// Handle is the push consumer callback. It acknowledges only after every
// message of the batch is recorded; any MySQL error retries the batch
// (marking is idempotent).
func (t *Tracker) Handle(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	// The client's context carries no deadline; bound the batch here.
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	now := time.Now()
	for _, msg := range msgs {
		id, err := uuid.Parse(msg.GetKeys())
		if err != nil {
			t.logger.Warn("ORDER_PAID message without an order id key", "msg_id", msg.MsgId, "key", msg.GetKeys())
			continue // nothing to track; retrying cannot help
		}
		if _, err := t.store.MarkPublished(ctx, id, now); err != nil {
			t.logger.Warn("record published event; will retry", "order_id", id.String(), "error", err)
			return consumer.ConsumeRetryLater, nil
		}
	}
	return consumer.ConsumeSuccess, nil
}
