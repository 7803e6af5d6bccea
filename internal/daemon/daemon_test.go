package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestConfigFlag(t *testing.T) {
	var out strings.Builder
	if p, _, ok := ConfigFlag("d", "def.yaml", "about d", nil, &out); !ok || p != "def.yaml" {
		t.Fatalf("no args = %q %v", p, ok)
	}
	if p, _, ok := ConfigFlag("d", "def.yaml", "about d", []string{"--config", "x.yaml"}, &out); !ok || p != "x.yaml" {
		t.Fatalf("--config x.yaml = %q %v", p, ok)
	}
	if _, code, ok := ConfigFlag("d", "def.yaml", "about d", []string{"--help"}, &out); ok || code != 0 || !strings.Contains(out.String(), "about d") {
		t.Fatalf("--help = %d %v %q", code, ok, out.String())
	}
	if _, code, ok := ConfigFlag("d", "def.yaml", "about d", []string{"--nope"}, &out); ok || code != 2 {
		t.Fatalf("--nope = %d %v", code, ok)
	}
}

type fakeService struct {
	openErr error
	mu      sync.Mutex
	closed  int
}

func (f *fakeService) Open(context.Context) error { return f.openErr }
func (f *fakeService) Addr() string               { return "127.0.0.1:1" }
func (f *fakeService) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

// readyLog signals once the "ready" line is written.
type readyLog struct {
	once  sync.Once
	ready chan struct{}
}

func (w *readyLog) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "svc ready") {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func TestRunServesUntilSIGTERM(t *testing.T) {
	svc := &fakeService{}
	w := &readyLog{ready: make(chan struct{})}
	go func() {
		select {
		case <-w.ready:
			_ = syscall.Kill(syscall.Getpid(), syscall.SIGTERM) // caught by Run's NotifyContext
		case <-time.After(10 * time.Second):
		}
	}()
	if code := Run("svc", svc, slog.New(slog.NewTextHandler(w, nil))); code != 0 || svc.closed != 1 {
		t.Fatalf("Run = %d, closed %d times; want 0 and once", code, svc.closed)
	}
}

func TestRunFailsToOpen(t *testing.T) {
	svc := &fakeService{openErr: errors.New("mysql: no")}
	if code := Run("svc", svc, slog.New(slog.NewTextHandler(io.Discard, nil))); code != 1 || svc.closed != 1 {
		t.Fatalf("Run = %d, closed %d times; want 1 and once (partial Open cleaned up)", code, svc.closed)
	}
}
