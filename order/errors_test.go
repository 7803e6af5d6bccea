package order_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/txorder/txorder/order"
)

// TestTranslateError: what MySQL or database/sql says becomes the domain's
// errors. A transaction whose context ended between statements surfaces
// as sql.ErrTxDone; it used to pass through as "MySQL said no", so a
// placement that only timed out was refused with 503 instead of being
// cached in Redis (seen in make test on a loaded machine).
func TestTranslateError(t *testing.T) {
	cases := []struct {
		name        string
		err         error
		unavailable bool
		notFound    bool
		conflict    bool
	}{
		{"no rows", sql.ErrNoRows, false, true, false},
		{"duplicate key", &mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, false, false, true},
		{"deadlock", &mysql.MySQLError{Number: 1213}, true, false, false},
		{"deadline", context.DeadlineExceeded, true, false, false},
		{"transaction rolled back by its context", fmt.Errorf("insert order: %w", sql.ErrTxDone), true, false, false},
		{"refused", syscall.ECONNREFUSED, true, false, false},
		{"check constraint", &mysql.MySQLError{Number: 4025}, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := order.TranslateError(tc.err)
			if order.IsUnavailable(got) != tc.unavailable || errors.Is(got, order.ErrNotFound) != tc.notFound ||
				errors.Is(got, order.ErrConflict) != tc.conflict {
				t.Fatalf("TranslateError(%v) = %v: unavailable %v, not found %v, conflict %v",
					tc.err, got, order.IsUnavailable(got), errors.Is(got, order.ErrNotFound), errors.Is(got, order.ErrConflict))
			}
		})
	}
	if !order.WriteMayHaveCommitted(order.TranslateError(sql.ErrTxDone)) {
		t.Fatal("a write whose transaction ended on its context counts as surely not committed")
	}
}
