package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/testenv"
)

// startProcess runs orderd as its own process (so it can be SIGKILLed)
// and waits until it serves.
func startProcess(t testing.TB, env []string) *testenv.Service {
	t.Helper()
	return testenv.StartService(t, testenv.Build(t, "cmd/orderd"), []string{"--config", "../../configs/orderd.yaml"},
		env, "orderd ready", func(rec testenv.LogRecord) {
			if rec.Level == "WARN" {
				t.Log("orderd:", rec.Line)
			}
		})
}

// killEnv makes the local transaction slow enough to kill orderd inside it,
// with a broker whose first check-back comes after that transaction's
// timeout, as the configuration check demands.
func killEnv(s *stack) []string {
	return append(append([]string{}, s.env...),
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=1500ms",
		"TXORDER_MYSQL__TIMEOUT=1500ms",
		"TXORDER_REDIS__TIMEOUT=400ms",
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=3500ms",
		"TXORDER_LOG__LEVEL=info",
	)
}

func newKillStack(t testing.TB) *stack {
	return newStack(t, stackOptions{privateRedis: true, brokerTxTimeout: 3500 * time.Millisecond})
}

// TestOrderdKilledBeforeLocalWrite: orderd is SIGKILLed after the half
// message was sent while its MySQL transaction waits on a lock. The
// transaction went to MySQL as one query (START TRANSACTION … COMMIT), so
// MySQL may run it to the end once the lock is released although its client
// is gone (observed), or abort it when it notices the disconnect. Either
// way the broker must follow the row: after a restart the check-back keeps
// the half message open under a stored, pending order, and rolls it back
// only when no order was stored.
func TestOrderdKilledBeforeLocalWrite(t *testing.T) {
	s := newKillStack(t)
	p := startProcess(t, killEnv(s))
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), `LOCK TABLES orders WRITE`); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.Addr+"/v1/orders", strings.NewReader(orderBody))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "killed-1")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		answered <- err
	}()
	waitFor(t, 5*time.Second, "the INSERT to wait on the lock", func() bool {
		var n int
		_ = s.db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO orders%'`).Scan(&n)
		return n > 0
	})
	if st := s.orderTx(); st.Pending != 1 {
		t.Fatalf("broker = %+v, want the half message just sent pending", st)
	}
	p.Kill()
	if _, err := conn.ExecContext(t.Context(), `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err == nil {
		t.Fatal("the client got an answer from a killed orderd")
	}
	p = startProcess(t, killEnv(s))
	checkedPending := func() bool {
		res, err := http.Get("http://" + p.Addr + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.Contains(string(b), `txorder_tx_check_total{answer="unknown",reason="pending"}`)
	}
	waitFor(t, 20*time.Second, "a check-back answered from MySQL", func() bool {
		return s.orderTx().RolledBack == 1 || checkedPending()
	})
	st, row := s.orderTx(), s.rowStatus(s.firstOrderID())
	t.Logf("after the restart: broker %+v, order row %q", st, row)
	switch {
	case row == "PENDING_PAYMENT":
		if st.RolledBack != 0 || st.Committed != 0 || st.Pending != 1 {
			t.Fatalf("broker = %+v, want the half message still pending (its order is stored)", st)
		}
	case row == "":
		if st.RolledBack != 1 || st.Committed != 0 || st.Pending != 0 {
			t.Fatalf("broker = %+v, want the half message rolled back (no order was stored)", st)
		}
	default:
		t.Fatalf("order row %q: want PENDING_PAYMENT or none", row)
	}
}

// TestOrderdKilledAfterLocalWrite: orderd is SIGKILLed after the MySQL
// write committed but before it answered the broker (Redis is paused, so
// the call after the insert hangs). After a restart the check-back finds
// the order; paying it releases the event once.
func TestOrderdKilledAfterLocalWrite(t *testing.T) {
	s := newKillStack(t)
	p := startProcess(t, killEnv(s))
	if err := s.rd.Pause(); err != nil {
		t.Fatal(err)
	}
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.Addr+"/v1/orders", strings.NewReader(orderBody))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "killed-2")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	var id string
	waitFor(t, 5*time.Second, "the order row to be committed", func() bool {
		id = s.firstOrderID()
		return id != ""
	})
	p.Kill()
	if err := s.rd.Resume(); err != nil {
		t.Fatal(err)
	}
	if st := s.orderTx(); st.Pending != 1 || st.Committed+st.RolledBack != 0 {
		t.Fatalf("broker = %+v, want the half message still open", st)
	}
	again := startProcess(t, killEnv(s))
	waitFor(t, 10*time.Second, "the restarted orderd to answer a check-back: pending", func() bool {
		res, err := http.Get("http://" + again.Addr + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.Contains(string(b), `txorder_tx_check_total{answer="unknown",reason="pending"}`)
	})
	if st := s.orderTx(); st.Pending != 1 || s.rowStatus(id) != "PENDING_PAYMENT" {
		t.Fatalf("broker %+v, row %s: want the order waiting for payment", st, s.rowStatus(id))
	}
	if !s.pay(again.Addr, id) {
		t.Fatal("payment lost")
	}
	waitFor(t, 10*time.Second, "the event to be committed", func() bool { return s.published()[id] == 1 })
}

// firstOrderID returns the id of some order in the database, or "".
func (s *stack) firstOrderID() string {
	var id string
	_ = s.db.QueryRow(`SELECT id FROM orders LIMIT 1`).Scan(&id)
	return id
}

// TestOrderdKilledBetweenPaymentAndFastCommit: the payment's MySQL
// transaction committed PAID and the webhook answered 200, but orderd is
// SIGKILLed before its fast commit went out (Redis is paused, so the
// committer is still reading the coordinates). The half message stays
// open; after a restart the check-back commits it, once.
func TestOrderdKilledBetweenPaymentAndFastCommit(t *testing.T) {
	s := newKillStack(t)
	// A longer Redis timeout widens the window in which the committer
	// waits on the paused Redis (send 1s + execute 1.5s + Redis 0.9s still
	// fit in the broker's 3.5s transaction timeout).
	env := append(killEnv(s), "TXORDER_REDIS__TIMEOUT=900ms")
	p := startProcess(t, env)
	placed := place(t, p.Addr, "killed-before-fast-commit")
	if placed.code != http.StatusCreated {
		t.Fatalf("place = %+v", placed)
	}
	s.waitCoordinates(s.redis(), placed.id)
	if err := s.rd.Pause(); err != nil {
		t.Fatal(err)
	}
	if !s.pay(p.Addr, placed.id) {
		t.Fatal("payment refused")
	}
	p.Kill()
	if err := s.rd.Resume(); err != nil {
		t.Fatal(err)
	}
	if st := s.orderTx(); st.Pending != 1 || st.Committed != 0 {
		t.Fatalf("broker = %+v after the kill, want the half message still open (no fast commit went out)", st)
	}
	if s.rowStatus(placed.id) != "PAID" || s.paymentStatus(placed.id) != "APPLIED" {
		t.Fatalf("order %s, payment %s: want the payment committed before the kill", s.rowStatus(placed.id), s.paymentStatus(placed.id))
	}
	startProcess(t, env)
	waitFor(t, 15*time.Second, "the check-back to commit the event", func() bool { return s.published()[placed.id] >= 1 })
	s.announcedOnce(t, []string{placed.id})
}
