package listener

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// Sender is a plain (non-transactional) producer (rocketmq.Producer).
type Sender interface {
	SendSync(ctx context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error)
}

// ReconcilerConfig tunes a Reconciler.
type ReconcilerConfig struct {
	Topic string
	// Grace: a paid order whose event has not reached the topic this long
	// after payment is republished. Default 3 check intervals; keep it
	// above 2 so an event that a check-back is about to commit is not
	// published twice needlessly.
	Grace time.Duration
	// Interval between rounds. Default 30s.
	Interval time.Duration
	// Batch bounds the orders republished per round. Default 100.
	Batch int
	// Timeout bounds one round. Default 30s.
	Timeout time.Duration
}

// Reconciler republishes ORDER_PAID for paid orders whose event never
// reached the topic: the broker gave up on the half message after
// transactionCheckMax checks (orderd was down meanwhile) or a COMMIT was
// lost. It publishes a plain message with the same key; downstream dedup by
// order id makes a duplicate harmless. It also reports payments that must
// be refunded. Several replicas may run it: rows are locked with SKIP
// LOCKED while a round publishes them.
type Reconciler struct {
	store    *order.Store
	db       *sql.DB
	producer Sender
	cfg      ReconcilerConfig
	logger   *slog.Logger

	republished prometheus.Counter
	oldestAge   prometheus.Gauge
	refunds     prometheus.Gauge
	mismatches  prometheus.Gauge
	lastRefunds int64
	lastMism    int64
}

// NewReconciler returns a Reconciler; reg may be nil.
func NewReconciler(store *order.Store, producer Sender, reg prometheus.Registerer, logger *slog.Logger, cfg ReconcilerConfig) (*Reconciler, error) {
	if store == nil || producer == nil || logger == nil || cfg.Topic == "" {
		return nil, errors.New("reconciler: store, producer, logger and topic are required")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 90 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	r := &Reconciler{store: store, db: store.DB(), producer: producer, cfg: cfg,
		logger: logger.With("component", "reconciler"), lastRefunds: -1, lastMism: -1,
		republished: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "reconciler",
			Name: "republished_total", Help: "ORDER_PAID events republished for paid orders the topic never saw."}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "txorder", Subsystem: "reconciler",
			Name: "oldest_unpublished_paid_seconds", Help: "Age since payment of the oldest paid order whose event was not seen on the topic (0: none)."}),
		refunds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "txorder", Subsystem: "reconciler",
			Name: "refunds_required", Help: "Recorded payments that must be refunded (order closed or already paid)."}),
		mismatches: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "txorder", Subsystem: "reconciler",
			Name: "amount_mismatches", Help: "Recorded payments not applied because amount or currency differ from the order (captured money to refund or settle by hand)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.republished, r.oldestAge, r.refunds, r.mismatches} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// maxCatchUpRounds bounds the rounds run back to back after one tick.
const maxCatchUpRounds = 100

// Run reconciles every Interval until ctx is done. A round that republishes
// a full batch is followed at once by another (at most maxCatchUpRounds per
// tick), so a backlog — every order whose half message the broker gave up on
// during a long outage — drains at the broker's pace, not at Batch orders
// per Interval.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		for range maxCatchUpRounds {
			n, err := r.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				r.logger.Warn("reconcile round failed", "error", err)
			}
			if err != nil || n < r.cfg.Batch || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce runs one round and returns how many orders it republished.
func (r *Reconciler) RunOnce(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	n, err := r.store.ForEachUnpublishedPaid(ctx, time.Now().Add(-r.cfg.Grace), r.cfg.Batch, r.publish)
	r.republished.Add(float64(n))
	if n > 0 {
		r.logger.Warn("republished ORDER_PAID for paid orders the topic never saw", "count", n)
	}
	r.report(ctx)
	return n, err
}

func (r *Reconciler) publish(ctx context.Context, o *order.Order) error {
	body, err := json.Marshal(order.EventOf(o))
	if err != nil {
		return err
	}
	msg := primitive.NewMessage(r.cfg.Topic, body)
	msg.WithKeys([]string{o.ID.String()})
	res, err := r.producer.SendSync(ctx, msg)
	if err != nil {
		return fmt.Errorf("republish %s: %w", o.ID, err)
	}
	if res.Status != primitive.SendOK {
		return fmt.Errorf("republish %s: send status %d", o.ID, res.Status)
	}
	r.logger.Info("republished ORDER_PAID", "order_id", o.ID.String(), "msg_id", res.MsgID)
	return nil
}

// report refreshes the gauges and logs when the refund or mismatch count
// changes.
func (r *Reconciler) report(ctx context.Context) {
	if n, err := payment.CountAmountMismatches(ctx, r.db); err == nil {
		r.mismatches.Set(float64(n))
		if n != r.lastMism && n > 0 {
			r.logger.Warn("payments not applied: amount or currency differ from the order", "count", n)
		}
		r.lastMism = n
	}
	if paidAt, ok, err := r.store.OldestUnpublishedPaid(ctx); err == nil {
		age := 0.0
		if ok {
			age = time.Since(paidAt).Seconds()
		}
		r.oldestAge.Set(age)
	}
	n, err := payment.CountRefundsRequired(ctx, r.db)
	if err != nil {
		return
	}
	r.refunds.Set(float64(n))
	if n != r.lastRefunds && n > 0 {
		r.logger.Warn("payments waiting for a refund", "count", n)
	}
	r.lastRefunds = n
}
