package listener

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/internal/rounds"
	"github.com/txorder/txorder/order"
)

// CloserConfig tunes a Closer.
type CloserConfig struct {
	// Grace: an order still PENDING_PAYMENT this long after its payment
	// deadline is closed. Default 90s (3 check intervals of the broker's
	// default 30s); keep it above 2 check intervals so that the check-back,
	// which closes an order at its deadline and rolls its half message
	// back, does so first and the closer only catches orphans.
	Grace time.Duration
	// Interval between rounds. Default 30s.
	Interval time.Duration
	// Batch bounds the orders closed per round; a full batch is followed
	// at once by the next round. Default 100.
	Batch int
	// Timeout bounds one round. Default 30s.
	Timeout time.Duration
	// Releaser, if set, is told every order the closer closed, to roll its
	// half message back at once if the broker still holds it (halfmsg
	// .Committer). It must not block.
	Releaser interface{ Rollback(id uuid.UUID) }
	// Now defaults to time.Now.
	Now func() time.Time
}

// Closer closes unpaid orders whose check-back never came. Normally the
// check-back closes an unpaid order at its payment deadline (docs/design.md
// §4.2); when the half message is gone (the broker gave up on it after
// transactionCheckMax checks while orderd or MySQL was down, or it was
// rolled back by a race) nothing else would, and the order would take a
// payment days later. The close is the same compare-and-set as the
// check-back's, so it is safe against both: a check-back that comes later
// finds CLOSED and answers ROLLBACK, and a payment racing it either wins
// (the order is PAID, the closer leaves it) or is recorded
// REFUND_REQUIRED. Several replicas may run it: rows are locked with SKIP
// LOCKED while a round closes them.
type Closer struct {
	store  *order.Store
	cfg    CloserConfig
	logger *slog.Logger

	closed prometheus.Counter
}

// NewCloser returns a Closer; reg may be nil.
func NewCloser(store *order.Store, reg prometheus.Registerer, logger *slog.Logger, cfg CloserConfig) (*Closer, error) {
	if store == nil || logger == nil {
		return nil, errors.New("closer: store and logger are required")
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Closer{store: store, cfg: cfg, logger: logger.With("component", "closer"),
		closed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "closer",
			Name: "closed_total", Help: "Unpaid orders closed past their payment deadline because no check-back closed them."}),
	}
	if reg != nil {
		if err := reg.Register(c.closed); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run closes expired orders every Interval until ctx is done; a round that
// filled its batch is followed at once by the next.
func (c *Closer) Run(ctx context.Context) {
	rounds.Run(ctx, 0, c.cfg.Interval, func(ctx context.Context) bool {
		n, err := c.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			c.logger.Warn("close round failed", "error", err)
		}
		return err == nil && n >= c.cfg.Batch
	})
}

// RunOnce runs one round and returns how many orders it closed.
func (c *Closer) RunOnce(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	now := c.cfg.Now()
	ids, err := c.store.CloseExpired(ctx, now.Add(-c.cfg.Grace), c.cfg.Batch, now)
	c.closed.Add(float64(len(ids)))
	if len(ids) > 0 {
		c.logger.Warn("closed orders past their payment deadline whose check-back never came",
			"count", len(ids), "grace", c.cfg.Grace.String())
	}
	if c.cfg.Releaser != nil {
		for _, id := range ids {
			c.cfg.Releaser.Rollback(id)
		}
	}
	return len(ids), err
}
