package order

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// Sentinel errors of the order domain. Callers test them with errors.Is.
var (
	// ErrNotFound: no order with that id.
	ErrNotFound = errors.New("order not found")
	// ErrConflict: the write collides with an existing row (same id or the
	// same idempotency key).
	ErrConflict = errors.New("order conflict")
	// ErrIdempotencyMismatch: the idempotency key was used before with a
	// different request body.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrInvalidTransition: the state machine does not allow the move.
	ErrInvalidTransition = errors.New("invalid status transition")
	// ErrUnavailable: the store could not be reached or did not answer in
	// time. The outcome of a write that fails this way is unknown: it may
	// or may not have been committed. The transactional flow relies on
	// telling this apart from every other error ("MySQL said no").
	ErrUnavailable = errors.New("order store unavailable")
)

// ErrOutcomeUnknown: a write failed in a way that does not tell whether it
// committed (a timeout or a connection lost after the statement was sent).
var ErrOutcomeUnknown = errors.New("outcome unknown")

// WriteMayHaveCommitted reports whether a failed write may still have
// committed: true unless the error proves the statement never reached
// MySQL (the connection was refused, or the circuit breaker held it back).
func WriteMayHaveCommitted(err error) bool {
	if err == nil {
		return true
	}
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		return false // MySQL answered: it said no
	}
	return !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, ErrNotAttempted)
}

// ErrNotAttempted marks a call that was never sent (e.g. held back by a
// circuit breaker); wrap it in an UnavailableError.
var ErrNotAttempted = errors.New("not attempted")

// UnavailableError wraps the driver error behind ErrUnavailable so that logs
// keep the cause while callers only test errors.Is(err, ErrUnavailable).
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return "order store unavailable: " + e.Err.Error() }

// Unwrap returns both the sentinel and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// MySQL server error numbers that mean "try again later", not "no".
var transientMySQLErrors = map[uint16]bool{
	1040: true, // ER_CON_COUNT_ERROR: too many connections
	1053: true, // ER_SERVER_SHUTDOWN
	1205: true, // ER_LOCK_WAIT_TIMEOUT
	1213: true, // ER_LOCK_DEADLOCK
	1927: true, // ER_CONNECTION_KILLED
	2006: true, // CR_SERVER_GONE_ERROR
	2013: true, // CR_SERVER_LOST
	1290: true, // ER_OPTION_PREVENTS_STATEMENT (read-only during failover)
}

// translate maps a database/sql or driver error to the domain's errors. It
// is the only place driver errors are interpreted; nothing above the store
// sees them except as a wrapped cause.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		if me.Number == 1062 { // ER_DUP_ENTRY
			return fmt.Errorf("%w: %s", ErrConflict, me.Message)
		}
		if transientMySQLErrors[me.Number] {
			return &UnavailableError{Err: err}
		}
		return err
	}
	if isUnavailable(err) {
		return &UnavailableError{Err: err}
	}
	return err
}

func isUnavailable(err error) bool {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		errors.Is(err, driver.ErrBadConn),
		errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, sql.ErrConnDone),
		// The transaction's context ended between two of its statements:
		// database/sql rolled it back, and the next call says ErrTxDone.
		// It is the same timeout as a DeadlineExceeded inside a statement.
		errors.Is(err, sql.ErrTxDone),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.As(err, &netErr):
		return true
	}
	return false
}

// IsUnavailable reports whether err means the store could not be reached.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
