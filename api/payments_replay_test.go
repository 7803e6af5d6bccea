package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/order"
)

// placeTotal stores a PENDING_PAYMENT order of qty × 1250 EUR.
func (f *payFixture) placeTotal(t *testing.T, qty int) *order.Order {
	t.Helper()
	res, err := f.orders.Place(context.Background(), order.PlaceRequest{ClientID: "demo", IdempotencyKey: uuid.NewString(),
		Order: order.NewOrder{CustomerID: "c-1", Currency: "EUR",
			Items: []order.NewItem{{SKU: "SKU-1", Name: "Widget", Quantity: qty, UnitPrice: 1250}}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Order
}

// atOnce runs send(0..n-1) in n goroutines released together and returns
// their answers by index.
func atOnce(n int, send func(i int) payResponse) []payResponse {
	answers := make([]payResponse, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = send(i)
		}()
	}
	close(start)
	wg.Wait()
	return answers
}

// answer is what the provider sees of a notification's answer, without
// what identifies the request itself (request_id) or says it was replayed.
type answer struct {
	status  int
	problem api.Problem
	view    api.PaymentView
}

func (r payResponse) answer(t *testing.T) answer {
	t.Helper()
	a := answer{status: r.status}
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &a.view); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		a.view.Replayed = false
		return a
	}
	if err := json.Unmarshal(r.body, &a.problem); err != nil {
		t.Fatalf("problem %q: %v", r.body, err)
	}
	a.problem.RequestID = ""
	return a
}

// TestPaymentTxnIDIsCaseSensitive (issue 12, finding 1): provider
// transaction ids that differ only in case are two payments. The second
// used to be answered 200 "replayed" with the first order's payment while
// its own order stayed unpaid and nothing of it was stored.
func TestPaymentTxnIDIsCaseSensitive(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	a, b := f.placeTotal(t, 2), f.placeTotal(t, 3)
	va := f.notify(t, notifyBody(a.ID, "X-TxnCase-Ab", a.Total, "EUR")).view(t)
	vb := f.notify(t, notifyBody(b.ID, "x-txncase-ab", b.Total, "EUR")).view(t)
	if va.Replayed || vb.Replayed || va.OrderID != a.ID || vb.OrderID != b.ID || va.PaymentID == vb.PaymentID ||
		va.Status != "APPLIED" || vb.Status != "APPLIED" {
		t.Fatalf("answers %+v and %+v, want two applied payments", va, vb)
	}
	for _, o := range []*order.Order{a, b} {
		if row := f.order(t, o.ID); row.status != "PAID" {
			t.Fatalf("order %s is %s, want PAID", o.ID, row.status)
		}
	}
	got := f.payments(t)
	want := []storedPayment{{"X-TxnCase-Ab", a.ID.String(), "APPLIED", a.Total, "EUR"}, {"x-txncase-ab", b.ID.String(), "APPLIED", b.Total, "EUR"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("payments = %+v, want %+v", got, want)
	}
}

// TestPaymentReplayGetsFirstAnswer (issue 12, finding 3): a notification
// sent again, identical, gets the status and body its first delivery got,
// whatever that was, marked with Idempotent-Replayed; nothing changes.
func TestPaymentReplayGetsFirstAnswer(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	paid := f.place(t)
	f.notify(t, notifyBody(paid.ID, "tx-paid-first", 2500, "EUR")).view(t)
	closed := f.place(t)
	if _, err := f.db.Exec(`UPDATE orders SET status = 'CLOSED', closed_at = UTC_TIMESTAMP(6) WHERE id = ?`, closed.ID.String()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"applied", notifyBody(f.place(t).ID, "tx-applied", 2500, "EUR"), http.StatusOK, ""},
		{"amount mismatch", notifyBody(f.place(t).ID, "tx-short", 2499, "EUR"), http.StatusUnprocessableEntity, api.CodeAmountMismatch},
		{"currency mismatch", notifyBody(f.place(t).ID, "tx-usd", 2500, "USD"), http.StatusUnprocessableEntity, api.CodeAmountMismatch},
		{"order closed", notifyBody(closed.ID, "tx-late", 2500, "EUR"), http.StatusConflict, api.CodeOrderClosed},
		{"already paid", notifyBody(paid.ID, "tx-double", 2500, "EUR"), http.StatusConflict, api.CodeOrderAlreadyPaid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first := f.notify(t, tc.body)
			if first.status != tc.status {
				t.Fatalf("first delivery = %d %s, want %d", first.status, first.body, tc.status)
			}
			if tc.code != "" {
				first.expectProblem(t, tc.status, tc.code)
			}
			if first.header.Get(api.HeaderReplayed) != "" {
				t.Fatalf("first delivery marked %s", api.HeaderReplayed)
			}
			rowsBefore := f.payments(t)
			for i := range 3 {
				again := f.notify(t, tc.body)
				if got, want := again.answer(t), first.answer(t); !reflect.DeepEqual(got, want) {
					t.Fatalf("delivery %d answered %+v, want the first answer %+v", i+2, got, want)
				}
				if again.header.Get(api.HeaderReplayed) != "true" {
					t.Fatalf("delivery %d without %s: true", i+2, api.HeaderReplayed)
				}
				if tc.status == http.StatusOK && !again.view(t).Replayed {
					t.Fatalf("delivery %d: replayed false", i+2)
				}
			}
			if after := f.payments(t); fmt.Sprint(after) != fmt.Sprint(rowsBefore) {
				t.Fatalf("payments changed by replays: %+v → %+v", rowsBefore, after)
			}
		})
	}
}

// TestPaymentTxnReused (issue 12, finding 3): a notification reusing a
// recorded provider transaction id for another order, amount or currency
// is refused with 409 provider_txn_reused, applies nothing, and is kept in
// payment_conflicts (one row per variant, counted).
func TestPaymentTxnReused(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 2*time.Second)
	o, other := f.place(t), f.place(t)
	first := f.notify(t, notifyBody(o.ID, "tx-1", 2500, "EUR")).view(t)
	variants := []string{
		notifyBody(other.ID, "tx-1", 2500, "EUR"),
		notifyBody(o.ID, "tx-1", 2400, "EUR"),
		notifyBody(o.ID, "tx-1", 2500, "USD"),
	}
	for _, body := range variants {
		for range 2 {
			res := f.notify(t, body)
			p := res.expectProblem(t, http.StatusConflict, api.CodeProviderTxnReused)
			if !strings.Contains(p.Detail, fmt.Sprintf("payment %d", first.PaymentID)) {
				t.Fatalf("detail %q does not name the recorded payment %d", p.Detail, first.PaymentID)
			}
			if res.header.Get(api.HeaderReplayed) != "" {
				t.Fatalf("a reused id answered as a replay")
			}
		}
	}
	if row := f.order(t, other.ID); row.status != "PENDING_PAYMENT" {
		t.Fatalf("the other order is %s, want PENDING_PAYMENT", row.status)
	}
	if got := f.payments(t); len(got) != 1 {
		t.Fatalf("payments = %+v, want only the first", got)
	}
	rows, err := f.db.Query(`SELECT provider_txn_id, payment_id, order_id, amount, currency, times_seen FROM payment_conflicts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var txn, orderID, currency string
		var paymentID, amount int64
		var seen int
		if err := rows.Scan(&txn, &paymentID, &orderID, &amount, &currency, &seen); err != nil {
			t.Fatal(err)
		}
		if txn != "tx-1" || paymentID != first.PaymentID || seen != 2 {
			t.Fatalf("conflict %s %d %s %d %s seen %d", txn, paymentID, orderID, amount, currency, seen)
		}
		got = append(got, fmt.Sprintf("%s %d %s", orderID, amount, currency))
	}
	want := []string{other.ID.String() + " 2500 EUR", o.ID.String() + " 2400 EUR", o.ID.String() + " 2500 USD"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("payment_conflicts = %v, want %v", got, want)
	}
}

// TestPaymentConcurrentReplays (issue 12, must show): 20 identical
// notifications at once make one payment row, and every answer is the
// first one's — 200 for a payment that applies, 422 for one that does not.
func TestPaymentConcurrentReplays(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 10*time.Second)
	for _, tc := range []struct {
		name   string
		amount int64
		status int
	}{
		{"applies", 2500, http.StatusOK},
		{"amount mismatch", 2000, http.StatusUnprocessableEntity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := f.place(t)
			body := notifyBody(o.ID, "tx-burst-"+o.ID.String(), tc.amount, "EUR")
			const n = 20
			answers := atOnce(n, func(int) payResponse { return f.notify(t, body) })
			fresh := 0
			for i, a := range answers {
				if a.status != tc.status {
					t.Fatalf("answer %d = %d %s, want %d", i, a.status, a.body, tc.status)
				}
				if !reflect.DeepEqual(a.answer(t), answers[0].answer(t)) {
					t.Fatalf("answer %d = %+v, answer 0 = %+v: not the same", i, a.answer(t), answers[0].answer(t))
				}
				if a.header.Get(api.HeaderReplayed) == "" {
					fresh++
				}
			}
			if fresh != 1 {
				t.Fatalf("%d answers were not replays, want exactly 1", fresh)
			}
			var rows int
			if err := f.db.QueryRow(`SELECT COUNT(*) FROM payments WHERE order_id = ?`, o.ID.String()).Scan(&rows); err != nil || rows != 1 {
				t.Fatalf("payment rows = %d (%v), want 1", rows, err)
			}
		})
	}
}

// TestPaymentCaseVariantsConcurrent (issue 12, must show): 10 provider
// transaction ids that differ only in case, sent at once for 10 orders,
// are 10 payments with 10 answers of their own.
func TestPaymentCaseVariantsConcurrent(t *testing.T) {
	f := newPayFixture(t, shared(t).NewDatabase(t), 10*time.Second)
	const n = 10
	orders := make([]*order.Order, n)
	txns := make([]string, n)
	for i := range n {
		orders[i] = f.placeTotal(t, i+1)
		// tx-abcd with the letters of i's bits upper-cased: 10 spellings.
		b := []byte("tx-abcd")
		for bit := range 4 {
			if i&(1<<bit) != 0 {
				b[3+bit] -= 'a' - 'A'
			}
		}
		txns[i] = string(b)
	}
	answers := atOnce(n, func(i int) payResponse {
		return f.notify(t, notifyBody(orders[i].ID, txns[i], orders[i].Total, "EUR"))
	})
	ids := map[int64]bool{}
	for i, a := range answers {
		v := a.view(t)
		if v.Replayed || v.OrderID != orders[i].ID || v.Status != "APPLIED" || v.OrderStatus != "PAID" {
			t.Fatalf("%s for order %d = %+v, want its own applied payment", txns[i], i, v)
		}
		ids[v.PaymentID] = true
	}
	got := f.payments(t)
	if len(ids) != n || len(got) != n {
		t.Fatalf("%d payment ids answered, %d rows stored, want %d of each: %+v", len(ids), len(got), n, got)
	}
	byTxn := map[string]storedPayment{}
	for _, p := range got {
		byTxn[p.txn] = p
	}
	for i := range n {
		if p := byTxn[txns[i]]; p.orderID != orders[i].ID.String() || p.amount != orders[i].Total || p.status != "APPLIED" {
			t.Fatalf("payment %s = %+v, want order %d's", txns[i], p, i)
		}
	}
}
