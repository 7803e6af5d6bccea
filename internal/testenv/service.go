package testenv

import (
	"bufio"
	"encoding/json"
	"io"
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
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// Build compiles a command of this module ("cmd/orderd" or its full import
// path) once per test binary, without the race detector (it runs as its own
// process), and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	if !strings.Contains(pkg, ".") {
		pkg = "github.com/txorder/txorder/" + pkg
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "txorder-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = dir
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// LogRecord is one JSON log line of a Service.
type LogRecord struct {
	Msg, Level, Addr string
	// Line is the raw line.
	Line string
}

// Service is one of our binaries running as its own OS process, so that a
// test can SIGKILL it. It dies with the test binary (Pdeathsig) and is
// killed when the test ends.
type Service struct {
	// Addr is the address from its "<name> ready" log line.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartService runs bin with args and env (added to this process's) and
// waits up to 30 s for the JSON log line whose msg is ready, taking its
// addr. Every ERROR line goes to the test log; onLog, if set, sees every
// JSON line (from another goroutine).
func StartService(t testing.TB, bin string, args, env []string, ready string, onLog func(LogRecord)) *Service {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Service{cmd: cmd, done: make(chan struct{})}
	readyAddr := make(chan string, 1)
	name := filepath.Base(bin)
	// One goroutine reads the log to its end and only then reaps the
	// process (Wait closes the pipe), so that Kill returning means no more
	// t.Log from here: logging after the test ended would panic.
	go func() {
		defer close(s.done)
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec LogRecord
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			rec.Line = sc.Text()
			if rec.Msg == ready {
				select {
				case readyAddr <- rec.Addr:
				default:
				}
			}
			if rec.Level == "ERROR" {
				t.Log(name+":", rec.Line)
			}
			if onLog != nil {
				onLog(rec)
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // a line over 1 MiB stopped the scanner
	}()
	t.Cleanup(s.Kill)
	select {
	case s.Addr = <-readyAddr:
	case <-s.done:
		t.Fatalf("%s exited during start-up", name)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready within 30s", name)
	}
	return s
}

// Kill sends SIGKILL and waits until the process is gone. Killing a dead
// service does nothing.
func (s *Service) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Signal sends sig to the process (SIGSTOP to freeze it with requests in
// flight, SIGTERM to ask it to shut down); nothing once it has exited.
func (s *Service) Signal(sig syscall.Signal) {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM and waits up to within for the process to exit, as a
// supervisor stopping it gracefully; it reports whether it exited in time
// (if not, it is SIGKILLed).
func (s *Service) Stop(within time.Duration) bool {
	s.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return true
	case <-time.After(within):
		s.Kill()
		return false
	}
}

// Done is closed when the process has exited.
func (s *Service) Done() <-chan struct{} { return s.done }
