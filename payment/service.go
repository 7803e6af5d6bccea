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
//   - provider transaction recorded before → the stored payment, Replayed,
//     nil error; nothing changes, whatever n says now;
//   - no such order → ErrOrderNotFound; nothing is recorded;
//   - amount or currency differ → recorded AMOUNT_MISMATCH, order
//     unchanged, ErrAmountMismatch;
//   - order CLOSED → recorded REFUND_REQUIRED, ErrOrderClosed;
//   - order PAID (by another provider transaction) → recorded
//     REFUND_REQUIRED, ErrAlreadyPaid;
//   - order PENDING_PAYMENT → order PAID by compare-and-set, recorded
//     APPLIED, nil error.
//
// With ErrAmountMismatch and ErrRefundRequired the Result describes the
// recorded payment. MySQL unreachable or too slow → order.ErrUnavailable:
// the outcome is unknown and the provider's retry settles it (a replay if
// the first attempt committed). An invalid n → ErrInvalidNotification.
//
// The row lock and the compare-and-set make a payment racing the deadline
// closer (which closes with UPDATE … WHERE status = 'PENDING_PAYMENT')
// safe: exactly one of them wins, and a losing payment is REFUND_REQUIRED.
// A payment after the deadline that arrives before the closer still wins.
func (s *Service) Notify(ctx context.Context, n Notification) (Result, error) {
	if err := n.Validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.apply(ctx, n, s.now().UTC().Truncate(time.Microsecond))
	if errors.Is(err, errReplay) {
		return s.replay(ctx, n.ProviderTxnID)
	}
	return res, err
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
		Currency: n.Currency, Status: StatusApplied, ReceivedAt: now}
	r, err := tx.ExecContext(ctx, `INSERT INTO payments (provider_txn_id, order_id, amount, currency, status, received_at)
		VALUES (?, ?, ?, ?, ?, ?)`, p.ProviderTxnID, p.OrderID.String(), p.Amount, p.Currency, string(p.Status), p.ReceivedAt)
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
	var outcome error
	switch {
	case o.Total != n.Amount || o.Currency != n.Currency:
		p.Status = StatusAmountMismatch
		outcome = fmt.Errorf("%w: paid %d %s, order total is %d %s", ErrAmountMismatch, n.Amount, n.Currency, o.Total, o.Currency)
	case o.Status == order.StatusClosed:
		p.Status, outcome = StatusRefundRequired, ErrOrderClosed
	case o.Status == order.StatusPaid:
		p.Status, outcome = StatusRefundRequired, ErrAlreadyPaid
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
	if p.Status != StatusApplied {
		if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = ? WHERE id = ?`, string(p.Status), p.ID); err != nil {
			return Result{}, fmt.Errorf("record payment status: %w", order.TranslateError(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return Result{}, fmt.Errorf("commit payment: %w", order.TranslateError(err))
	}
	res := Result{Payment: p, OrderStatus: o.Status}
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

// replay returns the payment stored under txnID and its order's current
// status.
func (s *Service) replay(ctx context.Context, txnID string) (Result, error) {
	var p Payment
	var orderID, status string
	err := s.db.QueryRowContext(ctx, `SELECT id, provider_txn_id, order_id, amount, currency, status, received_at
		FROM payments WHERE provider_txn_id = ?`, txnID).
		Scan(&p.ID, &p.ProviderTxnID, &orderID, &p.Amount, &p.Currency, &status, &p.ReceivedAt)
	if err != nil {
		return Result{}, fmt.Errorf("read recorded payment: %w", order.TranslateError(err))
	}
	p.Status = Status(status)
	p.ReceivedAt = p.ReceivedAt.UTC()
	if p.OrderID, err = uuid.Parse(orderID); err != nil {
		return Result{}, fmt.Errorf("recorded payment %d: order id %q: %w", p.ID, orderID, err)
	}
	o, err := s.store.Get(ctx, p.OrderID)
	if err != nil {
		return Result{}, fmt.Errorf("read order of recorded payment: %w", err)
	}
	return Result{Payment: p, OrderStatus: o.Status, Replayed: true}, nil
}
