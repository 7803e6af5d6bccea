// Package audit checks txorder's promise (docs/design.md §1) after any run: it
// reads the order database (orders, payments) and the fulfillment
// database (shipments, consumed_messages), which may be one database or
// two servers, and reports every acknowledged order that went missing,
// every paid order a consumer group did not apply or applied twice, and
// every effect without a paid order behind it.
//
// It loads the ids of all orders and shipments into memory (about 100
// bytes per order): fine for test and chaos runs of millions of orders,
// not meant for a production table of billions.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
)

// Holder is a place an accepted order can wait before it reaches MySQL:
// the Redis order cache (MySQL was down) or the spill queue (RocketMQ was
// down). IDs lists every order held there.
type Holder struct {
	Name string
	IDs  func(ctx context.Context) ([]uuid.UUID, error)
}

// Config tunes an audit.
type Config struct {
	// Group is the consumer group whose consumption is audited (its
	// consumed_messages rows). Default "fulfillment".
	Group string
	// Settle is how long to wait for paid orders to be applied (and
	// accepted ones to appear): the audit repeats until nothing is lost or
	// absent, or Settle has passed. 0: one pass.
	Settle time.Duration
	// Poll is the pause between passes while settling. Default 500ms.
	Poll time.Duration
	// Accepted, when not nil, is the list of orders a client was told
	// were accepted (201/202): each must be stored or held somewhere.
	Accepted []uuid.UUID
	// Holders are where accepted orders may still be waiting.
	Holders []Holder
	// MaxListed bounds each list of offending order ids in the report
	// (the counts are always exact). Default 100.
	MaxListed int
}

// Report is the result of an audit. Counts are exact; the id lists are cut
// at Config.MaxListed.
type Report struct {
	Group string `json:"group"`
	// Accepted is the length of Config.Accepted, or -1 without one.
	Accepted int `json:"accepted"`
	// Stored counts order rows in MySQL.
	Stored int `json:"stored"`
	// Held counts orders per holder ("cached", "queued").
	Held           map[string]int `json:"held"`
	PendingPayment int            `json:"pending_payment"`
	Paid           int            `json:"paid"`
	Closed         int            `json:"closed"`
	// Applied counts PAID orders the group applied (at least once).
	Applied int `json:"applied"`
	// Shipments counts shipment rows.
	Shipments int `json:"shipments"`
	// RefundsRequired counts payments recorded as REFUND_REQUIRED.
	RefundsRequired int `json:"refunds_required"`
	// TxnReused counts notifications refused because they reused a
	// recorded provider transaction id for another payment
	// (payment_conflicts, one row per variant): a provider-side problem
	// for a person to look at, not a failure of the promise.
	TxnReused int `json:"provider_txn_reused"`

	// PaymentToShipment* describe, over the orders with an APPLIED
	// payment and a shipment, the time from the payment's record
	// (payments.received_at) to the first shipment row (shipments
	// .created_at): how long a paid order's event took to reach
	// fulfillment. Both clocks are the database servers'.
	PaymentToShipmentCount int     `json:"payment_to_shipment_count"`
	PaymentToShipmentP50   float64 `json:"payment_to_shipment_p50_ms"`
	PaymentToShipmentP99   float64 `json:"payment_to_shipment_p99_ms"`
	PaymentToShipmentMax   float64 `json:"payment_to_shipment_max_ms"`

	// Lost: PAID orders not applied by the group after settling.
	Lost    int      `json:"lost"`
	LostIDs []string `json:"lost_ids"`
	// Duplicated: orders with more than one shipment.
	Duplicated    int               `json:"duplicated"`
	DuplicatedIDs []DuplicatedOrder `json:"duplicated_ids"`
	// Phantom: shipments or consumptions of orders that are not PAID
	// (pending, closed, or absent from MySQL).
	Phantom    int             `json:"phantom"`
	PhantomIDs []PhantomEffect `json:"phantom_ids"`
	// Absent: accepted orders found nowhere (not in MySQL, not held).
	Absent    int      `json:"absent"`
	AbsentIDs []string `json:"absent_ids"`

	// Passes is how many times the audit read the databases; Waited how
	// long it settled.
	Passes int     `json:"passes"`
	Waited float64 `json:"waited_seconds"`
	// OK is true when lost = duplicated = phantom = absent = 0.
	OK bool `json:"ok"`
}

// DuplicatedOrder is an order applied more than once.
type DuplicatedOrder struct {
	OrderID   string `json:"order_id"`
	Shipments int    `json:"shipments"`
}

// PhantomEffect is a downstream effect without a paid order.
type PhantomEffect struct {
	OrderID string `json:"order_id"`
	// Status is the order's status, or ABSENT.
	Status string `json:"status"`
}

// Run audits until the system settled or cfg.Settle passed, and returns
// the last report. A pass whose reads fail is retried until cfg.Settle has
// passed; an error means a database (or holder) could still not be read,
// and no report is returned.
func Run(ctx context.Context, orders, fulfillment *sql.DB, cfg Config) (Report, error) {
	if orders == nil || fulfillment == nil {
		return Report{}, errors.New("audit: both the order and the fulfillment database are required")
	}
	if cfg.Group == "" {
		cfg.Group = "fulfillment"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.MaxListed <= 0 {
		cfg.MaxListed = 100
	}
	start := time.Now()
	deadline := start.Add(cfg.Settle)
	for pass := 1; ; pass++ {
		r, err := once(ctx, orders, fulfillment, cfg)
		if err != nil {
			// A read that fails (a connection dropped or timed out on a
			// loaded machine) is tried again while the settle time lasts;
			// a verdict only ever comes from a complete read.
			if ctx.Err() != nil || !time.Now().Add(cfg.Poll).Before(deadline) {
				return Report{}, err
			}
			select {
			case <-ctx.Done():
				return Report{}, err
			case <-time.After(cfg.Poll):
			}
			continue
		}
		r.Passes = pass
		r.Waited = time.Since(start).Seconds()
		// Duplicates and phantoms never heal; lost and absent may still
		// be on their way.
		if (r.Lost == 0 && r.Absent == 0) || !time.Now().Add(cfg.Poll).Before(deadline) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, nil
		case <-time.After(cfg.Poll):
		}
	}
}

// once reads everything and computes one report.
func once(ctx context.Context, orders, fulfillment *sql.DB, cfg Config) (Report, error) {
	r := Report{Group: cfg.Group, Accepted: -1, Held: map[string]int{}}
	status, err := orderStatuses(ctx, orders)
	if err != nil {
		return r, err
	}
	if err := orders.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments WHERE status = 'REFUND_REQUIRED'`).Scan(&r.RefundsRequired); err != nil {
		return r, fmt.Errorf("audit: read payments: %w", err)
	}
	if err := orders.QueryRowContext(ctx, `SELECT COUNT(*) FROM payment_conflicts`).Scan(&r.TxnReused); err != nil {
		return r, fmt.Errorf("audit: read payment_conflicts: %w", err)
	}
	shipments, err := countByOrder(ctx, fulfillment, `SELECT order_id, COUNT(*) FROM shipments GROUP BY order_id`)
	if err != nil {
		return r, fmt.Errorf("audit: read shipments: %w", err)
	}
	consumed, err := countByOrder(ctx, fulfillment, `SELECT order_id, COUNT(*) FROM consumed_messages WHERE consumer_group = ? GROUP BY order_id`, cfg.Group)
	if err != nil {
		return r, fmt.Errorf("audit: read consumed_messages: %w", err)
	}
	if err := paymentToShipment(ctx, orders, fulfillment, &r); err != nil {
		return r, err
	}
	held := map[string]bool{}
	for _, h := range cfg.Holders {
		ids, err := h.IDs(ctx)
		if err != nil {
			return r, fmt.Errorf("audit: read %s orders: %w", h.Name, err)
		}
		r.Held[h.Name] = len(ids)
		for _, id := range ids {
			held[id.String()] = true
		}
	}

	r.Stored = len(status)
	for id, st := range status {
		switch st {
		case "PENDING_PAYMENT":
			r.PendingPayment++
		case "CLOSED":
			r.Closed++
		case "PAID":
			r.Paid++
			if shipments[id] > 0 {
				r.Applied++
			} else {
				r.Lost++
				r.LostIDs = append(r.LostIDs, id)
			}
		}
	}
	for id, n := range shipments {
		r.Shipments += n
		if n > 1 {
			r.Duplicated++
			r.DuplicatedIDs = append(r.DuplicatedIDs, DuplicatedOrder{OrderID: id, Shipments: n})
		}
	}
	// An effect (shipment or recorded consumption) of an order that is not
	// PAID: announced without having happened.
	phantom := map[string]bool{}
	for _, m := range []map[string]int{shipments, consumed} {
		for id := range m {
			if st := status[id]; st != "PAID" && !phantom[id] {
				phantom[id] = true
				if st == "" {
					st = "ABSENT"
				}
				r.Phantom++
				r.PhantomIDs = append(r.PhantomIDs, PhantomEffect{OrderID: id, Status: st})
			}
		}
	}
	if cfg.Accepted != nil {
		r.Accepted = len(cfg.Accepted)
		seen := map[string]bool{}
		for _, u := range cfg.Accepted {
			id := u.String()
			if seen[id] {
				continue
			}
			seen[id] = true
			if _, ok := status[id]; !ok && !held[id] {
				r.Absent++
				r.AbsentIDs = append(r.AbsentIDs, id)
			}
		}
	}
	sort.Strings(r.LostIDs)
	sort.Strings(r.AbsentIDs)
	sort.Slice(r.DuplicatedIDs, func(i, j int) bool { return r.DuplicatedIDs[i].OrderID < r.DuplicatedIDs[j].OrderID })
	sort.Slice(r.PhantomIDs, func(i, j int) bool { return r.PhantomIDs[i].OrderID < r.PhantomIDs[j].OrderID })
	r.LostIDs = cut(r.LostIDs, cfg.MaxListed)
	r.AbsentIDs = cut(r.AbsentIDs, cfg.MaxListed)
	r.DuplicatedIDs = cut(r.DuplicatedIDs, cfg.MaxListed)
	r.PhantomIDs = cut(r.PhantomIDs, cfg.MaxListed)
	r.OK = r.Lost == 0 && r.Duplicated == 0 && r.Phantom == 0 && r.Absent == 0
	return r, nil
}

// paymentToShipment fills r's payment → shipment latency figures.
func paymentToShipment(ctx context.Context, orders, fulfillment *sql.DB, r *Report) error {
	paid, err := timeByOrder(ctx, orders, `SELECT order_id, received_at FROM payments WHERE status = 'APPLIED'`)
	if err != nil {
		return fmt.Errorf("audit: read payments: %w", err)
	}
	shipped, err := timeByOrder(ctx, fulfillment, `SELECT order_id, MIN(created_at) FROM shipments GROUP BY order_id`)
	if err != nil {
		return fmt.Errorf("audit: read shipments: %w", err)
	}
	var ms []float64
	for id, at := range paid {
		if s, ok := shipped[id]; ok {
			ms = append(ms, float64(s.Sub(at).Microseconds())/1000)
		}
	}
	if len(ms) == 0 {
		return nil
	}
	sort.Float64s(ms)
	q := func(p float64) float64 { return ms[min(len(ms)-1, max(0, int(p*float64(len(ms))+0.5)-1))] }
	r.PaymentToShipmentCount = len(ms)
	r.PaymentToShipmentP50, r.PaymentToShipmentP99, r.PaymentToShipmentMax = q(0.50), q(0.99), ms[len(ms)-1]
	return nil
}

func timeByOrder(ctx context.Context, db *sql.DB, query string) (map[string]time.Time, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[strings.ToLower(id)] = at
	}
	return out, rows.Err()
}

func cut[T any](s []T, n int) []T {
	if s == nil {
		return []T{}
	}
	if len(s) > n {
		return s[:n]
	}
	return s
}

func orderStatuses(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, status FROM orders`)
	if err != nil {
		return nil, fmt.Errorf("audit: read orders: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, fmt.Errorf("audit: read orders: %w", err)
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read orders: %w", err)
	}
	return out, nil
}

func countByOrder(ctx context.Context, db *sql.DB, query string, args ...any) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// Failures names the broken invariants, e.g. "lost=2 duplicated=1", or ""
// when the report is OK.
func (r Report) Failures() string {
	var parts []string
	for _, f := range []struct {
		name string
		n    int
	}{{"lost", r.Lost}, {"duplicated", r.Duplicated}, {"phantom", r.Phantom}, {"absent", r.Absent}} {
		if f.n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, f.n))
		}
	}
	return strings.Join(parts, " ")
}

// WriteJSON writes the report as one indented JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for a terminal: the counts, then the
// offending order ids.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(name string, n int) { fmt.Fprintf(tw, "%s\t%d\t\n", name, n) }
	if r.Accepted >= 0 {
		row("accepted (201/202)", r.Accepted)
	}
	row("stored in MySQL", r.Stored)
	names := make([]string, 0, len(r.Held))
	for name := range r.Held {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		row("still "+name, r.Held[name])
	}
	row("PENDING_PAYMENT", r.PendingPayment)
	row("PAID", r.Paid)
	row("CLOSED", r.Closed)
	row("paid and applied", r.Applied)
	row("shipments", r.Shipments)
	row("refunds required", r.RefundsRequired)
	row("provider txn ids reused", r.TxnReused)
	if r.PaymentToShipmentCount > 0 {
		fmt.Fprintf(tw, "payment → shipment p50 / p99 / max\t%.0f / %.0f / %.0f ms\t\n",
			r.PaymentToShipmentP50, r.PaymentToShipmentP99, r.PaymentToShipmentMax)
	}
	row("LOST (paid, not applied)", r.Lost)
	row("DUPLICATED (applied twice)", r.Duplicated)
	row("PHANTOM (applied, not paid)", r.Phantom)
	if r.Accepted >= 0 {
		row("ABSENT (accepted, nowhere)", r.Absent)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, id := range r.LostIDs {
		fmt.Fprintf(w, "lost: %s\n", id)
	}
	for _, d := range r.DuplicatedIDs {
		fmt.Fprintf(w, "duplicated: %s (%d shipments)\n", d.OrderID, d.Shipments)
	}
	for _, p := range r.PhantomIDs {
		fmt.Fprintf(w, "phantom: %s (order %s)\n", p.OrderID, p.Status)
	}
	for _, id := range r.AbsentIDs {
		fmt.Fprintf(w, "absent: %s\n", id)
	}
	verdict := "OK"
	if !r.OK {
		verdict = "FAILED: " + r.Failures()
	}
	_, err := fmt.Fprintf(w, "group %q, %d pass(es) in %.1fs: %s\n", r.Group, r.Passes, r.Waited, verdict)
	return err
}
