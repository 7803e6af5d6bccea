package listener

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"

	"github.com/txorder/txorder/order"
)

// TestStaleStateViewNeverAnswersWrong: three replicas share one MySQL. A
// places orders, C takes payments and closes orders, the publish tracker
// (any replica) marks events published, and B answers the broker's
// check-backs from its own in-memory state view, refreshed now and then.
// In a seeded random interleaving of 3,000 such steps B's answers are
// checked against MySQL at that moment (an order C closed past its
// deadline is still "pending" in B's view: B's compare-and-set loses and
// re-reads CLOSED):
//
//   - never wrong: COMMIT only for a PAID order, ROLLBACK never for one;
//   - stale only within one refresh: a paid order B has refreshed past
//     (paid before that refresh, still unannounced then) is always
//     answered COMMIT;
//   - the residual case, an order paid and announced between two of B's
//     refreshes, stays "pending" in B's view and is answered UNKNOWN until
//     B's next full reload; harmless, because the broker does not check a
//     committed half message again (its event is already on the topic).
//
// The stale answers it counts are the cost: each delays that order's
// COMMIT (or ROLLBACK) by one check interval.
func TestStaleStateViewNeverAnswersWrong(t *testing.T) {
	f := newFixture(t, sharedMySQL, sharedRedis)
	ctx := context.Background()
	view := order.StoreConfig{Timeout: time.Second,
		// Refreshed only by the test, and trusted until then.
		StateView: order.StateViewConfig{Enabled: true, MaxAge: time.Hour, FullEvery: time.Hour}}
	newReplica := func() *order.Store {
		s, err := order.NewStore(f.db, view)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, c := newReplica(), newReplica(), newReplica()
	bTx, err := NewTransaction(b, f.cache, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), TransactionConfig{
		ExecuteTimeout: time.Second, CheckTimeout: time.Second, BreakerFailures: 3, BreakerOpenFor: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(id uuid.UUID) primitive.LocalTransactionState {
		msg := &primitive.MessageExt{Message: primitive.Message{Topic: "ORDER_PAID"}}
		msg.WithKeys([]string{id.String()})
		return bTx.CheckLocalTransaction(msg)
	}

	// 300 orders placed on A, 30 of them already past their deadline.
	now := time.Now().UTC().Truncate(time.Microsecond)
	var ids, expired []uuid.UUID
	for i := range 300 {
		o := f.newOrder(uuid.NewString())
		if i%10 == 0 {
			o.PaymentDeadline = now.Add(-time.Second)
		} else {
			o.PaymentDeadline = now.Add(time.Hour)
		}
		if err := a.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
		if i%10 == 0 {
			expired = append(expired, o.ID)
		}
	}
	if err := b.RefreshStateView(ctx); err != nil { // B's first refresh: a full load
		t.Fatal(err)
	}

	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	var (
		paidAt      = map[uuid.UUID]int{} // step the order was paid (by C)
		publishedAt = map[uuid.UUID]int{} // step its event was marked published
		refreshes   []int                 // steps of B's refreshes
		checks      = map[string]int{}
		stalePaid   int
		staleClosed int
	)
	// refreshedPast: B refreshed after the payment while the event was
	// still unannounced, so the refresh saw it PAID and dropped it.
	refreshedPast := func(id uuid.UUID) bool {
		p, pub := paidAt[id], publishedAt[id]
		for _, r := range refreshes {
			if r > p && (pub == 0 || r < pub) {
				return true
			}
		}
		return false
	}
	for step := 1; step <= 3000; step++ {
		id := ids[rng.IntN(len(ids))]
		switch k := rng.IntN(11); {
		case k < 2: // a payment through C
			if won, err := c.Transition(ctx, nil, id, order.StatusPendingPayment, order.StatusPaid, time.Now()); err != nil {
				t.Fatal(err)
			} else if won {
				paidAt[id] = step
			}
		case k < 3: // the tracker saw its event on the topic
			if _, ok := paidAt[id]; ok {
				if set, err := a.MarkPublished(ctx, id, time.Now()); err != nil {
					t.Fatal(err)
				} else if set {
					publishedAt[id] = step
				}
			}
		case k < 4: // C's closer closes an order past its deadline
			e := expired[rng.IntN(len(expired))]
			if _, err := c.Transition(ctx, nil, e, order.StatusPendingPayment, order.StatusClosed, time.Now()); err != nil {
				t.Fatal(err)
			}
		case k < 5: // B's periodic refresh
			if err := b.RefreshStateView(ctx); err != nil {
				t.Fatal(err)
			}
			refreshes = append(refreshes, step)
		default: // the broker asks B
			answer := check(id)
			truth, err := a.GetState(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			checks[stateName(answer)+"/"+string(truth.Status)]++
			switch {
			case answer == primitive.CommitMessageState && truth.Status != order.StatusPaid:
				t.Fatalf("step %d: B answered COMMIT for %s, which is %s", step, id, truth.Status)
			case answer == primitive.RollbackMessageState && truth.Status != order.StatusClosed:
				t.Fatalf("step %d: B answered ROLLBACK for %s, which is %s", step, id, truth.Status)
			case answer == primitive.UnknowState && truth.Status == order.StatusPaid:
				stalePaid++
				if refreshedPast(id) {
					t.Fatalf("step %d: B answered UNKNOWN for %s, paid at step %d and refreshed past since (published at step %d)",
						step, id, paidAt[id], publishedAt[id])
				}
			case answer == primitive.UnknowState && truth.Status == order.StatusClosed:
				staleClosed++
			}
		}
	}
	t.Logf("B's answers by MySQL truth: %v", checks)
	t.Logf("stale answers (UNKNOWN for a PAID order: one more check interval before COMMIT): %d; for a CLOSED one: %d",
		stalePaid, staleClosed)
	if checks["commit/PAID"] == 0 || checks["rollback/CLOSED"] == 0 || checks["unknown/PENDING_PAYMENT"] == 0 {
		t.Fatalf("the interleaving did not reach every case: %v", checks)
	}
}
