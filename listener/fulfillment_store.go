package listener

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/txorder/txorder/order"
)

// ShipmentStatusCreated is the status of a shipment fulfillment creates.
const ShipmentStatusCreated = "CREATED"

// FulfillmentStore is the downstream (fulfillment) database: the
// consumed_messages guard and the shipments it protects. Every call runs
// under its own timeout; driver errors come back translated by
// order.TranslateError (order.ErrUnavailable when MySQL is down).
type FulfillmentStore struct {
	db      *sql.DB
	timeout time.Duration
}

// NewFulfillmentStore returns a store on db (a go-sql-driver/mysql pool
// opened with parseTime=true). timeout bounds each call; 0 means 5s.
func NewFulfillmentStore(db *sql.DB, timeout time.Duration) (*FulfillmentStore, error) {
	if db == nil {
		return nil, errors.New("listener: fulfillment store needs a database")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &FulfillmentStore{db: db, timeout: timeout}, nil
}

// DB returns the pool.
func (s *FulfillmentStore) DB() *sql.DB { return s.db }

// Apply records that group consumed the event of ev.OrderID (delivered as
// msgID) and creates its shipment, in one transaction. It reports false,
// with no error and nothing written, when group had already applied that
// order: the consumed_messages primary key (consumer_group, order_id) is
// the idempotency guard, and it is inserted first so that a concurrent
// duplicate waits on the row lock and then fails on the key.
func (s *FulfillmentStore) Apply(ctx context.Context, group string, ev order.PaidEvent, msgID string, at time.Time) (applied bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, order.TranslateError(err)
	}
	defer func() {
		if err != nil || !applied {
			_ = tx.Rollback()
		}
	}()
	at = at.UTC()
	_, err = tx.ExecContext(ctx, `INSERT INTO consumed_messages (consumer_group, order_id, msg_id, consumed_at) VALUES (?, ?, ?, ?)`,
		group, ev.OrderID.String(), truncate(msgID, 64), at)
	if err != nil {
		err = order.TranslateError(err)
		if errors.Is(err, order.ErrConflict) {
			return false, nil
		}
		return false, fmt.Errorf("record consumption of order %s: %w", ev.OrderID, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO shipments (order_id, msg_id, status, created_at) VALUES (?, ?, ?, ?)`,
		ev.OrderID.String(), truncate(msgID, 64), ShipmentStatusCreated, at)
	if err != nil {
		return false, fmt.Errorf("create shipment of order %s: %w", ev.OrderID, order.TranslateError(err))
	}
	if err = tx.Commit(); err != nil {
		return false, fmt.Errorf("commit shipment of order %s: %w", ev.OrderID, order.TranslateError(err))
	}
	return true, nil
}

// Shipments returns how many shipments exist for orderID.
func (s *FulfillmentStore) Shipments(ctx context.Context, orderID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipments WHERE order_id = ?`, orderID).Scan(&n)
	return n, order.TranslateError(err)
}

// Ping checks that MySQL answers within the store timeout.
func (s *FulfillmentStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return order.TranslateError(s.db.PingContext(ctx))
}

// truncate cuts s to n bytes, for columns with a fixed width (message ids
// are 32 hex digits; a longer one from a foreign producer is cut, not
// refused).
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
