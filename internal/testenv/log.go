package testenv

import (
	"io"
	"strings"
	"sync"
	"testing"
)

// LogWriter returns a writer (for an slog handler) that sends each line to
// t.Log until the test ends, and drops it after: the RocketMQ client logs
// through a process-wide logger from its own goroutines, sometimes a moment
// after the service was closed, and t.Log after the end would panic. Call
// it before opening the service, so that its cleanup runs after the
// service's Close.
func LogWriter(t testing.TB) io.Writer {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type logWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
