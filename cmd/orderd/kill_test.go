package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// orderdBinary builds this package once per test run.
func orderdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orderd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "orderd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build orderd: %v", buildErr)
	}
	return binPath
}

// process is orderd running as its own OS process, so a test can SIGKILL it.
type process struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func startProcess(t *testing.T, env []string) *process {
	t.Helper()
	cmd := exec.Command(orderdBinary(t), "--config", "../../configs/orderd.yaml")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "orderd ready" {
				ready <- rec.Addr
			}
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
				t.Log("orderd:", line)
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill(t) })
	select {
	case p.addr = <-ready:
	case <-p.done:
		t.Fatal("orderd exited during start-up")
	case <-time.After(20 * time.Second):
		t.Fatal("orderd not ready within 20s")
	}
	return p
}

func (p *process) kill(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// killEnv makes the local transaction slow enough to kill orderd inside it,
// with a broker whose first check-back comes after that transaction's
// timeout, as the configuration check demands.
func killEnv(s *stack) []string {
	return append(append([]string{}, s.env...),
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=1500ms",
		"TXORDER_MYSQL__TIMEOUT=1500ms",
		"TXORDER_REDIS__TIMEOUT=400ms",
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=2s",
		"TXORDER_LOG__LEVEL=info",
	)
}

func newKillStack(t *testing.T) *stack {
	return newStack(t, stackOptions{privateRedis: true, brokerTxTimeout: 2 * time.Second})
}

// TestOrderdKilledBeforeLocalWrite: orderd is SIGKILLed after the half
// message was sent while its MySQL insert waits on a lock. Nothing was
// written, so after a restart the check-back rolls the half message back.
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
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/v1/orders", strings.NewReader(orderBody))
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
	p.kill(t)
	if _, err := conn.ExecContext(t.Context(), `UNLOCK TABLES`); err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err == nil {
		t.Fatal("the client got an answer from a killed orderd")
	}
	startProcess(t, killEnv(s))
	waitFor(t, 10*time.Second, "the check-back to roll the half message back", func() bool {
		st := s.orderTx()
		return st.RolledBack == 1 && st.Pending == 0 && st.Committed == 0
	})
	if st := s.rowStatus(s.firstOrderID()); st != "" {
		t.Fatalf("an order row exists (%s) although orderd died before writing it", st)
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
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/v1/orders", strings.NewReader(orderBody))
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
	p.kill(t)
	if err := s.rd.Resume(); err != nil {
		t.Fatal(err)
	}
	if st := s.orderTx(); st.Pending != 1 || st.Committed+st.RolledBack != 0 {
		t.Fatalf("broker = %+v, want the half message still open", st)
	}
	again := startProcess(t, killEnv(s))
	waitFor(t, 10*time.Second, "the restarted orderd to answer a check-back: pending", func() bool {
		res, err := http.Get("http://" + again.addr + "/metrics")
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
	if !s.pay(again.addr, id) {
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
