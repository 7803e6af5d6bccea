package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// Config tunes a Service.
type Config struct {
	// WebhookSecret is the HMAC-SHA256 key the provider signs with.
	// Required.
	WebhookSecret string
	// Tolerance is how far a signature's timestamp may be from now.
	// Default 5m.
	Tolerance time.Duration
	// Timeout bounds each Notify call, its transaction included. Default:
	// the order store's timeout.
	Timeout time.Duration
	// Now defaults to time.Now; tests inject a clock.
	Now func() time.Time
}

// Validate reports a missing secret or a negative duration.
func (c Config) Validate() error {
	switch {
	case c.WebhookSecret == "":
		return errors.New("payment: webhook secret is required")
	case c.Tolerance < 0:
		return errors.New("payment: tolerance must not be negative")
	case c.Timeout < 0:
		return errors.New("payment: timeout must not be negative")
	}
	return nil
}

// Service verifies and applies payment notifications. It is safe for
// concurrent use.
type Service struct {
	store    *order.Store
	db       *sql.DB
	verifier *Verifier
	logger   *slog.Logger
	timeout  time.Duration
	now      func() time.Time
}

// NewService returns a Service that keeps payments in the order database
// of store.
func NewService(store *order.Store, logger *slog.Logger, cfg Config) (*Service, error) {
	if store == nil || logger == nil {
		return nil, errors.New("payment: store and logger are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = 5 * time.Minute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = store.Timeout()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v, err := NewVerifier(cfg.WebhookSecret, cfg.Tolerance, cfg.Now)
	if err != nil {
		return nil, err
	}
	return &Service{store: store, db: store.DB(), verifier: v, logger: logger,
		timeout: cfg.Timeout, now: cfg.Now}, nil
}

// Verify checks the X-Signature header of a notification body. It returns
// ErrBadSignature (wrapped with the reason) on any failure.
func (s *Service) Verify(header string, body []byte) error { return s.verifier.Verify(header, body) }

// errReplay: the provider transaction id is already recorded.
var errReplay = errors.New("payment already recorded")

// Notify records the payment n and applies it to its order, in one MySQL
// transaction in which the order row is locked:
//
//   - no such order → ErrOrderNotFound; nothing is recorded;
//   - amount or currency differ → recorded AMOUNT_MISMATCH, order
//     unchanged, ErrAmountMismatch;
//   - order CLOSED → recorded REFUND_REQUIRED, ErrOrderClosed;
//   - order PAID (by another provider transaction) → recorded
//     REFUND_REQUIRED, ErrAlreadyPaid;
//   - order PENDING_PAYMENT → order PAID by compare-and-set, recorded
//     APPLIED, MarkedPaid, nil error.
//
// The outcome is stored with the payment. A provider transaction id
// recorded before is a replay: nothing changes, and when n is the recorded
// notification (same order, amount and currency) the result is Replayed
// with the stored payment and the first delivery's error, so the provider
// gets the same answer every time. When n differs it is another payment
// reusing the id: ErrTxnReused, recorded in payment_conflicts and logged.
// Provider transaction ids are compared byte for byte.
//
// With ErrAmountMismatch, ErrRefundRequired and ErrTxnReused the Result
// describes the recorded payment. MySQL unreachable or too slow →
// order.ErrUnavailable: the outcome is unknown and the provider's retry
// settles it (a replay if the first attempt committed). An invalid n →
// ErrInvalidNotification.
//
// The row lock and the compare-and-set make a payment racing the deadline
// closer (which closes with UPDATE … WHERE status = 'PENDING_PAYMENT')
// safe: exactly one of them wins, and a losing payment is REFUND_REQUIRED.
// A payment after the deadline that arrives before the closer still wins.
// Concurrent deliveries of one transaction wait on its unique key: one
// applies, the others replay its answer.
func (s *Service) Notify(ctx context.Context, n Notification) (Result, error) {
	if err := n.Validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now := s.now().UTC().Truncate(time.Microsecond)
	// The work runs beside the caller, who gets an answer at the deadline
	// whatever the work is blocked on: when the deadline falls between two
	// statements, database/sql rolls the transaction back on a connection
	// without a deadline and holds the next statement until that ROLLBACK
	// returns — one more round trip, 2 s per direction on a link with 2 s
	// latency (measured: payments answered after 4 s with a 2 s bound). The
	// work then finishes on its own, bounded by the driver's read timeout;
	// the outcome is unknown to the caller, and the provider's retry gets
	// the recorded answer as a replay.
	type answer struct {
		res Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := s.apply(ctx, n, now)
		if errors.Is(err, errReplay) {
			res, err = s.replay(ctx, n, now)
		}
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		return a.res, a.err
	case <-ctx.Done():
		select {
		case a := <-done: // finished at the deadline: its answer stands
			return a.res, a.err
		default:
		}
		return Result{}, fmt.Errorf("record payment: %w: %w", order.ErrUnavailable, ctx.Err())
	}
}

func (s *Service) apply(ctx context.Context, n Notification, now time.Time) (Result, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Result{}, fmt.Errorf("begin payment: %w", order.TranslateError(err))
	}
	defer func() { _ = tx.Rollback() }()

	// Insert first: the unique provider_txn_id makes a concurrent delivery
	// of the same transaction wait here until this one commits, then see
	// a duplicate. The status is settled below, before commit.
	p := Payment{ProviderTxnID: n.ProviderTxnID, OrderID: n.OrderID, Amount: n.Amount,
		Currency: n.Currency, Status: StatusApplied, Outcome: OutcomeApplied, ReceivedAt: now}
	r, err := tx.ExecContext(ctx, `INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, outcome, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, p.ProviderTxnID, p.OrderID.String(), p.Amount, p.Currency, string(p.Status), string(p.Outcome), p.ReceivedAt)
	if err != nil {
		err = order.TranslateError(err)
		if errors.Is(err, order.ErrConflict) {
			return Result{}, errReplay
		}
		return Result{}, fmt.Errorf("record payment: %w", err)
	}
	if p.ID, err = r.LastInsertId(); err != nil {
		return Result{}, fmt.Errorf("record payment: %w", order.TranslateError(err))
	}

	o, err := s.store.GetForUpdate(ctx, tx, n.OrderID)
	if errors.Is(err, order.ErrNotFound) {
		return Result{}, fmt.Errorf("%w: %s", ErrOrderNotFound, n.OrderID)
	}
	if err != nil {
		return Result{}, fmt.Errorf("lock order: %w", err)
	}
	switch {
	case o.Total != n.Amount || o.Currency != n.Currency:
		p.Status, p.Outcome = StatusAmountMismatch, OutcomeAmountMismatch
	case o.Status == order.StatusClosed:
		p.Status, p.Outcome = StatusRefundRequired, OutcomeOrderClosed
	case o.Status == order.StatusPaid:
		p.Status, p.Outcome = StatusRefundRequired, OutcomeAlreadyPaid
	case o.Status == order.StatusPendingPayment:
		won, err := s.store.Transition(ctx, tx, n.OrderID, order.StatusPendingPayment, order.StatusPaid, now)
		if err != nil {
			return Result{}, fmt.Errorf("mark order paid: %w", err)
		}
		if !won {
			// Cannot happen under the row lock; if it does, commit nothing
			// and let the provider's retry see the real status.
			return Result{}, fmt.Errorf("mark order paid: lost the compare-and-set on locked order %s", n.OrderID)
		}
		o.Status = order.StatusPaid
	default:
		return Result{}, fmt.Errorf("order %s has unknown status %q", n.OrderID, o.Status)
	}
	if p.Outcome != OutcomeApplied {
		if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = ?, outcome = ? WHERE id = ?`,
			string(p.Status), string(p.Outcome), p.ID); err != nil {
			return Result{}, fmt.Errorf("record payment status: %w", order.TranslateError(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return Result{}, fmt.Errorf("commit payment: %w", order.TranslateError(err))
	}
	res := Result{Payment: p, OrderStatus: o.Status, MarkedPaid: p.Outcome == OutcomeApplied}
	outcome := outcomeError(p, o.Total, o.Currency)
	if outcome != nil {
		// Money that has to go back or be looked at by a person: say so
		// once, here, with what an operator needs to find it.
		s.logger.LogAttrs(ctx, slog.LevelWarn, "payment not applied",
			slog.Int64("payment_id", p.ID), slog.String("provider_txn_id", p.ProviderTxnID),
			slog.String("order_id", p.OrderID.String()), slog.String("payment_status", string(p.Status)),
			slog.String("order_status", string(o.Status)), slog.String("reason", outcome.Error()))
	}
	return res, outcome
}

// replay answers a notification whose provider transaction id is recorded:
// the stored payment and the error its first delivery got when n is that
// notification, ErrTxnReused (recorded in payment_conflicts) when it is not.
func (s *Service) replay(ctx context.Context, n Notification, now time.Time) (Result, error) {
	var p Payment
	var orderID, status, outcome, orderStatus, orderCurrency string
	var orderTotal int64
	// The order row exists: a payment is recorded only for an existing
	// order, and orders are never deleted.
	err := s.db.QueryRowContext(ctx, `SELECT p.id, p.provider_txn_id, p.order_id, p.amount, p.currency, p.status, p.outcome,
			p.received_at, o.status, o.total_amount, o.currency
		FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.provider_txn_id = ?`, n.ProviderTxnID).
		Scan(&p.ID, &p.ProviderTxnID, &orderID, &p.Amount, &p.Currency, &status, &outcome,
			&p.ReceivedAt, &orderStatus, &orderTotal, &orderCurrency)
	if err != nil {
		return Result{}, fmt.Errorf("read recorded payment: %w", order.TranslateError(err))
	}
	p.Status, p.Outcome = Status(status), Outcome(outcome)
	p.ReceivedAt = p.ReceivedAt.UTC()
	if p.OrderID, err = uuid.Parse(orderID); err != nil {
		return Result{}, fmt.Errorf("recorded payment %d: order id %q: %w", p.ID, orderID, err)
	}
	res := Result{Payment: p, OrderStatus: order.Status(orderStatus), Replayed: true}
	if !p.Matches(n) {
		return res, s.recordConflict(ctx, p, n, now)
	}
	return res, outcomeError(p, orderTotal, orderCurrency)
}

// recordConflict keeps a notification that reused provider transaction id
// of payment p for another order, amount or currency: one row per distinct
// variant in payment_conflicts, counted, and a warning in the log. It
// returns ErrTxnReused, or order.ErrUnavailable when the row could not be
// written (the provider's retry records it).
func (s *Service) recordConflict(ctx context.Context, p Payment, n Notification, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO payment_conflicts
			(provider_txn_id, payment_id, order_id, amount, currency, times_seen, first_seen_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, 1, ?, ?)
		ON DUPLICATE KEY UPDATE times_seen = times_seen + 1, last_seen_at = VALUES(last_seen_at)`,
		n.ProviderTxnID, p.ID, n.OrderID.String(), n.Amount, n.Currency, now, now)
	if err != nil {
		return fmt.Errorf("record reused provider transaction: %w", order.TranslateError(err))
	}
	s.logger.LogAttrs(ctx, slog.LevelWarn, "provider transaction id reused for a different payment; not applied",
		slog.String("provider_txn_id", n.ProviderTxnID), slog.Int64("payment_id", p.ID),
		slog.String("recorded_order_id", p.OrderID.String()), slog.Int64("recorded_amount", p.Amount),
		slog.String("recorded_currency", p.Currency), slog.String("order_id", n.OrderID.String()),
		slog.Int64("amount", n.Amount), slog.String("currency", n.Currency))
	return fmt.Errorf("%w: %s is payment %d of %d %s for order %s; this notification is for %d %s of order %s",
		ErrTxnReused, n.ProviderTxnID, p.ID, p.Amount, p.Currency, p.OrderID, n.Amount, n.Currency, n.OrderID)
}
