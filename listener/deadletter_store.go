package listener

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/txorder/txorder/order"
)

// DeadLetter is a message a consumer group gave up on: either the broker
// moved it to %DLQ%<group> after maxReconsumeTimes failed attempts, or the
// handler found it malformed and parked it at once.
type DeadLetter struct {
	ID             int64
	Group          string
	OriginalMsgID  string
	Key            string
	Body           []byte
	ReconsumeTimes int
	Reason         string
	FirstSeenAt    time.Time
	LastSeenAt     time.Time
	// ReplayedAt is set once a replay applied the message (or found it
	// already applied); nil while it waits for an operator.
	ReplayedAt *time.Time
}

// DeadLetterStore keeps dead letters in the dead_letters table, one row
// per (consumer group, original message id).
type DeadLetterStore struct {
	db      *sql.DB
	timeout time.Duration
}

// NewDeadLetterStore returns a store on db; timeout bounds each call (0
// means 5s).
func NewDeadLetterStore(db *sql.DB, timeout time.Duration) (*DeadLetterStore, error) {
	if db == nil {
		return nil, errors.New("listener: dead letter store needs a database")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &DeadLetterStore{db: db, timeout: timeout}, nil
}

// Record stores d idempotently: the first delivery inserts the row, a
// redelivery of the same (group, original message id) only moves
// last_seen_at forward and keeps the highest reconsume count. It reports
// whether the row is new.
func (s *DeadLetterStore) Record(ctx context.Context, d DeadLetter, at time.Time) (inserted bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	at = at.UTC()
	if d.Body == nil {
		d.Body = []byte{} // the column is NOT NULL; an empty body is still evidence
	}
	// Affected rows: 1 for an insert, 2 for an update that changed the
	// row, 0 for one that changed nothing (go-sql-driver does not set
	// CLIENT_FOUND_ROWS).
	res, err := s.db.ExecContext(ctx, `INSERT INTO dead_letters
		(consumer_group, original_msg_id, msg_key, body, reconsume_times, reason, first_seen_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE
			last_seen_at = GREATEST(last_seen_at, VALUES(last_seen_at)),
			reconsume_times = GREATEST(reconsume_times, VALUES(reconsume_times))`,
		d.Group, truncate(d.OriginalMsgID, 64), truncate(d.Key, 128), d.Body, d.ReconsumeTimes, d.Reason, at, at)
	if err != nil {
		return false, fmt.Errorf("record dead letter %s: %w", d.OriginalMsgID, order.TranslateError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

const deadLetterColumns = `id, consumer_group, original_msg_id, msg_key, body, reconsume_times, reason,
	first_seen_at, last_seen_at, replayed_at`

func scanDeadLetter(sc interface{ Scan(...any) error }) (DeadLetter, error) {
	var d DeadLetter
	var replayed sql.NullTime
	err := sc.Scan(&d.ID, &d.Group, &d.OriginalMsgID, &d.Key, &d.Body, &d.ReconsumeTimes, &d.Reason,
		&d.FirstSeenAt, &d.LastSeenAt, &replayed)
	if replayed.Valid {
		t := replayed.Time.UTC()
		d.ReplayedAt = &t
	}
	d.FirstSeenAt, d.LastSeenAt = d.FirstSeenAt.UTC(), d.LastSeenAt.UTC()
	return d, err
}

// List returns the dead letters of group (every group when empty), oldest
// first; with pendingOnly, only those not replayed yet.
func (s *DeadLetterStore) List(ctx context.Context, group string, pendingOnly bool) ([]DeadLetter, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := `SELECT ` + deadLetterColumns + ` FROM dead_letters WHERE (? = '' OR consumer_group = ?)`
	if pendingOnly {
		q += ` AND replayed_at IS NULL`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id`, group, group)
	if err != nil {
		return nil, order.TranslateError(err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return nil, order.TranslateError(err)
		}
		out = append(out, d)
	}
	return out, order.TranslateError(rows.Err())
}

// Pending counts the dead letters of group (every group when empty) not
// replayed yet.
func (s *DeadLetterStore) Pending(ctx context.Context, group string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM dead_letters WHERE (? = '' OR consumer_group = ?) AND replayed_at IS NULL`,
		group, group).Scan(&n)
	return n, order.TranslateError(err)
}

// Get returns one dead letter, or order.ErrNotFound.
func (s *DeadLetterStore) Get(ctx context.Context, id int64) (DeadLetter, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d, err := scanDeadLetter(s.db.QueryRowContext(ctx, `SELECT `+deadLetterColumns+` FROM dead_letters WHERE id = ?`, id))
	if err != nil {
		return DeadLetter{}, order.TranslateError(err)
	}
	return d, nil
}

// MarkReplayed sets replayed_at of dead letter id (only the first time).
func (s *DeadLetterStore) MarkReplayed(ctx context.Context, id int64, at time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx, `UPDATE dead_letters SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL`, at.UTC(), id)
	return order.TranslateError(err)
}
