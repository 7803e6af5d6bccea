package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/order"
)

// DefaultFulfillmentGroup is the consumer group of the fulfillment service.
const DefaultFulfillmentGroup = "fulfillment"

// FulfillmentConfig tunes a Fulfillment handler.
type FulfillmentConfig struct {
	// Group is the consumer group whose consumption is recorded in
	// consumed_messages and dead_letters. Default "fulfillment".
	Group string
	// Timeout bounds the work of one message (its MySQL transaction, or
	// recording it as a dead letter). Default 5s.
	Timeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// BeforeApply, when set, runs before each well-formed event is
	// applied, with the delivery's reconsume count (0 on the first
	// delivery, and for a replay). An error fails the message as a MySQL
	// error would: the batch is retried later. It is how tests inject a
	// failing downstream without mocking the client; production leaves it
	// nil.
	BeforeApply func(ctx context.Context, ev order.PaidEvent, reconsumeTimes int32) error
}

// Fulfillment is the ORDER_PAID handler of the fulfillment service
// (docs/design.md §4.6). Consume is the push consumer's callback; it does all
// the work before it returns, so the client acknowledges (advances the
// offset) only after the MySQL transaction committed. Nothing is handed to
// another goroutine.
//
// Outcomes per message:
//   - applied: consumed_messages row and shipment inserted in one
//     transaction → success;
//   - already applied (the consumed_messages key exists: a redelivery, or
//     the reconciler's duplicate) → success, no second shipment;
//   - any error (MySQL down, timeout, deadlock, the BeforeApply hook)
//     → the whole batch is retried later through %RETRY%<group>, and
//     after maxReconsumeTimes the broker moves it to %DLQ%<group>, where
//     DeadLetterRecorder picks it up;
//   - malformed body (order.DecodePaidEvent fails, or the key is not the
//     body's order id) → recorded in dead_letters at once with the decode
//     error as reason, then success. Retrying cannot fix a body, and
//     waiting for the broker's DLQ would take maxReconsumeTimes growing
//     delays (hours with the default 16) and lose the reason on the way.
//     If that record cannot be written the message is retried like any
//     other failure.
type Fulfillment struct {
	store    *FulfillmentStore
	dead     *DeadLetterStore
	metrics  *FulfillmentMetrics
	logger   *slog.Logger
	cfg      FulfillmentConfig
	failures *failureMemo
	inFlight atomic.Int64
}

// NewFulfillment returns the handler. metrics may be nil (not recorded).
func NewFulfillment(store *FulfillmentStore, dead *DeadLetterStore, metrics *FulfillmentMetrics, logger *slog.Logger, cfg FulfillmentConfig) (*Fulfillment, error) {
	if store == nil || dead == nil || logger == nil {
		return nil, errors.New("listener: fulfillment needs a store, a dead letter store and a logger")
	}
	if cfg.Group == "" {
		cfg.Group = DefaultFulfillmentGroup
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if metrics == nil {
		metrics = NewFulfillmentMetrics(nil)
	}
	return &Fulfillment{store: store, dead: dead, metrics: metrics, cfg: cfg,
		logger:   logger.With("group", cfg.Group),
		failures: newFailureMemo(4096)}, nil
}

// Group returns the consumer group the handler records consumption for.
func (f *Fulfillment) Group() string { return f.cfg.Group }

// Consume handles one batch of ORDER_PAID messages. Messages are applied
// in order; the first failure stops the batch and asks for all of it to be
// redelivered (rocketmq-client-go v2.1.2 sends back the whole batch
// whatever the ack index), which is harmless because those already applied
// are recognised as duplicates.
func (f *Fulfillment) Consume(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for _, m := range msgs {
		if err := f.consumeOne(ctx, m); err != nil {
			f.metrics.retries.Inc()
			f.failures.put(m.MsgId, err.Error())
			f.logger.Warn("ORDER_PAID not applied, retry later", "msg_id", m.MsgId, "order_id", m.GetKeys(),
				"reconsume_times", m.ReconsumeTimes, "batch", len(msgs), "error", err)
			return consumer.ConsumeRetryLater, nil
		}
	}
	return consumer.ConsumeSuccess, nil
}

// InFlight returns how many Consume calls are running.
func (f *Fulfillment) InFlight() int64 { return f.inFlight.Load() }

// WaitIdle returns once no Consume call is running, or ctx's error.
func (f *Fulfillment) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for f.inFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d handler(s) still running: %w", f.inFlight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (f *Fulfillment) consumeOne(ctx context.Context, m *primitive.MessageExt) error {
	// The client's callback context carries no deadline: bound the work.
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	start := time.Now()
	defer func() { f.metrics.duration.Observe(time.Since(start).Seconds()) }()
	if m.StoreTimestamp > 0 {
		f.metrics.delay.Observe(max(0, start.Sub(time.UnixMilli(m.StoreTimestamp)).Seconds()))
	}
	ev, err := decodePaid(m)
	if err != nil {
		return f.park(ctx, m, err)
	}
	_, err = f.apply(ctx, ev, m.MsgId, m.ReconsumeTimes)
	return err
}

// decodePaid decodes the body and checks it against the message key.
func decodePaid(m *primitive.MessageExt) (order.PaidEvent, error) {
	ev, err := order.DecodePaidEvent(m.Body)
	if err != nil {
		return ev, err
	}
	if keys := m.GetKeys(); keys != "" && !hasKey(keys, ev.OrderID.String()) {
		return ev, fmt.Errorf("message key %q is not the body's order_id %s", keys, ev.OrderID)
	}
	return ev, nil
}

func hasKey(keys, want string) bool {
	for _, k := range strings.Fields(keys) {
		if k == want {
			return true
		}
	}
	return false
}

// apply runs the hook and the transaction, and counts the outcome.
func (f *Fulfillment) apply(ctx context.Context, ev order.PaidEvent, msgID string, reconsumeTimes int32) (bool, error) {
	if f.cfg.BeforeApply != nil {
		if err := f.cfg.BeforeApply(ctx, ev, reconsumeTimes); err != nil {
			return false, fmt.Errorf("apply order %s: %w", ev.OrderID, err)
		}
	}
	applied, err := f.store.Apply(ctx, f.cfg.Group, ev, msgID, f.cfg.Now())
	if err != nil {
		return false, err
	}
	if applied {
		f.metrics.applied.Inc()
		f.logger.Debug("ORDER_PAID applied", "order_id", ev.OrderID, "msg_id", msgID, "reconsume_times", reconsumeTimes)
	} else {
		f.metrics.duplicates.Inc()
		f.logger.Info("ORDER_PAID already applied", "order_id", ev.OrderID, "msg_id", msgID, "reconsume_times", reconsumeTimes)
	}
	return applied, nil
}

// park records a malformed message as a dead letter.
func (f *Fulfillment) park(ctx context.Context, m *primitive.MessageExt, cause error) error {
	d := DeadLetter{Group: f.cfg.Group, OriginalMsgID: m.MsgId, Key: m.GetKeys(), Body: m.Body,
		ReconsumeTimes: int(m.ReconsumeTimes), Reason: "malformed ORDER_PAID: " + cause.Error()}
	inserted, err := f.dead.Record(ctx, d, f.cfg.Now())
	if err != nil {
		return fmt.Errorf("park malformed message: %w", err)
	}
	if inserted {
		f.metrics.deadLetters.WithLabelValues(sourceMalformed).Inc()
	}
	f.logger.Warn("malformed ORDER_PAID recorded as a dead letter", "msg_id", m.MsgId, "key", m.GetKeys(), "reason", cause)
	return nil
}

// ReplayOutcome is what a replay did.
type ReplayOutcome string

// Replay outcomes.
const (
	ReplayApplied        ReplayOutcome = "applied"
	ReplayAlreadyApplied ReplayOutcome = "already_applied"
)

// ErrNotReplayable marks a dead letter that cannot be applied as it is (a
// malformed body, or one of another consumer group).
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// Replay re-applies dead letter id through the same path as a delivery
// (hook, transaction, idempotency guard) and marks it replayed. Replaying
// one that was applied meanwhile, or twice, is harmless: it is found
// already applied. It returns order.ErrNotFound for an unknown id and
// ErrNotReplayable for a malformed body or a foreign group.
func (f *Fulfillment) Replay(ctx context.Context, id int64) (ReplayOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*f.cfg.Timeout)
	defer cancel()
	d, err := f.dead.Get(ctx, id)
	if err != nil {
		return "", fmt.Errorf("dead letter %d: %w", id, err)
	}
	if d.Group != f.cfg.Group {
		return "", fmt.Errorf("%w: dead letter %d belongs to group %q, not %q", ErrNotReplayable, id, d.Group, f.cfg.Group)
	}
	m := &primitive.MessageExt{Message: primitive.Message{Body: d.Body}, MsgId: d.OriginalMsgID}
	if d.Key != "" {
		m.WithKeys([]string{d.Key})
	}
	ev, err := decodePaid(m)
	if err != nil {
		return "", fmt.Errorf("%w: dead letter %d: %w", ErrNotReplayable, id, err)
	}
	applied, err := f.apply(ctx, ev, d.OriginalMsgID, 0)
	if err != nil {
		return "", fmt.Errorf("replay dead letter %d: %w", id, err)
	}
	if err := f.dead.MarkReplayed(ctx, id, f.cfg.Now()); err != nil {
		return "", fmt.Errorf("mark dead letter %d replayed: %w", id, err)
	}
	f.metrics.replays.Inc()
	if applied {
		return ReplayApplied, nil
	}
	return ReplayAlreadyApplied, nil
}

// LastFailure returns the last error a delivery of msgID failed with in
// this process, if it is still remembered (the most recent few thousand
// are). DeadLetterRecorder uses it as the reason of a dead letter.
func (f *Fulfillment) LastFailure(msgID string) (string, bool) { return f.failures.get(msgID) }

// failureMemo remembers the last failure of recent message ids, bounded:
// the oldest entry goes when it is full.
type failureMemo struct {
	mu    sync.Mutex
	max   int
	byID  map[string]string
	order []string
}

func newFailureMemo(max int) *failureMemo {
	return &failureMemo{max: max, byID: make(map[string]string, max)}
}

func (m *failureMemo) put(id, reason string) {
	if id == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[id]; !ok {
		if len(m.order) >= m.max {
			delete(m.byID, m.order[0])
			m.order = m.order[1:]
		}
		m.order = append(m.order, id)
	}
	m.byID[id] = reason
}

func (m *failureMemo) get(id string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	return r, ok
}

// Dead letter sources (the label of dead_letters_total).
const (
	sourceMalformed = "malformed"
	sourceDLQ       = "dlq"
)

// FulfillmentMetrics are the fulfillment handler's and the dead letter
// recorder's Prometheus metrics.
type FulfillmentMetrics struct {
	applied     prometheus.Counter
	duplicates  prometheus.Counter
	retries     prometheus.Counter
	deadLetters *prometheus.CounterVec
	replays     prometheus.Counter
	duration    prometheus.Histogram
	delay       prometheus.Histogram
}

// NewFulfillmentMetrics creates the metrics and registers them on reg
// (nil: not registered).
func NewFulfillmentMetrics(reg prometheus.Registerer) *FulfillmentMetrics {
	m := &FulfillmentMetrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "applied_total",
			Help: "ORDER_PAID events applied: shipment created.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "duplicates_total",
			Help: "ORDER_PAID deliveries of orders already applied (redeliveries, reconciler duplicates); nothing written.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "retries_total",
			Help: "Batches handed back for redelivery (ConsumeRetryLater) after a failure.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "dead_letters_total",
			Help: "Dead letters recorded, by source: malformed (parked by the handler) or dlq (from %DLQ%<group>).",
		}, []string{"source"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "replays_total",
			Help: "Dead letters replayed.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "handle_duration_seconds",
			Help:    "Time to handle one ORDER_PAID message.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "txorder", Subsystem: "fulfillment", Name: "delivery_delay_seconds",
			Help: "From the broker storing an ORDER_PAID message (its commit, or a retry's requeue) to the start of its handling: " +
				"the consumer's lag in time. Includes the clock difference between broker and consumer.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}),
	}
	// Make both sources visible at 0 before the first dead letter.
	m.deadLetters.WithLabelValues(sourceMalformed)
	m.deadLetters.WithLabelValues(sourceDLQ)
	if reg != nil {
		reg.MustRegister(m.applied, m.duplicates, m.retries, m.deadLetters, m.replays, m.duration, m.delay)
	}
	return m
}
