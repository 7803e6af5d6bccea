package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds how long a server may take to accept connections,
	// crash recovery included.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds a graceful stop before it turns into SIGKILL.
	stopTimeout = 30 * time.Second
	// reapTimeout bounds the wait for a SIGKILLed process to be reaped.
	reapTimeout = 30 * time.Second
	// pollInterval is how often readiness is probed.
	pollInterval = 20 * time.Millisecond
	// startAttempts is how many free ports a first start tries before giving up.
	startAttempts = 5
	// logTailLines is how many lines of a server log an error quotes.
	logTailLines = 30
)

// searchDirs are looked at after PATH: Debian installs mariadbd in /usr/sbin,
// which is not in a normal user's PATH.
var searchDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}

// findBinary returns the path of the executable name, looking in PATH and
// then in searchDirs. The error says which Debian package to install.
func findBinary(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range searchDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %s: install it with: apt-get install -y %s",
		name, strings.Join(searchDirs, ", "), pkg)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// caller must cope with losing a race for it (see errPortInUse).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errPortInUse reports that a server exited because its port was taken.
var errPortInUse = errors.New("port already in use")

// process is one server binary that can be started, killed and started
// again with the same arguments and the same log file.
type process struct {
	name    string // binary name, for messages
	path    string
	args    []string
	logPath string

	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{} // closed once cmd has exited; nil before the first start
	logOffset int64         // size of the log when the current run started
}

// start launches the process. It does not wait for readiness.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil && !isClosed(p.done) {
		return fmt.Errorf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", p.name, err)
	}
	// The child keeps its own descriptor; ours is only needed until it has one.
	defer logf.Close()
	off, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("seek %s log: %w", p.name, err)
	}
	fmt.Fprintf(logf, "=== testenv %s: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))

	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()

	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		// Pdeathsig fires when the OS thread that forked the child exits, not
		// when the process does. Locking keeps this thread alive, and out of
		// the runtime's pool, until the child is reaped; the goroutine then
		// exits still locked, which retires the thread.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done, p.logOffset = cmd, done, off
	return nil
}

// exited returns a channel closed when the current run has ended. Before the
// first start it returns a closed channel.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

func (p *process) running() bool { return !isClosed(p.exited()) }

// kill sends SIGKILL and waits until the process has been reaped, so that
// its port and files are free when kill returns.
func (p *process) kill() error {
	return p.signalAndWait(syscall.SIGKILL, reapTimeout)
}

// stop asks the process to shut down with SIGTERM and waits; if it is still
// running after stopTimeout it is killed.
func (p *process) stop() error {
	err := p.signalAndWait(syscall.SIGTERM, stopTimeout)
	if err == nil {
		return nil
	}
	if kerr := p.kill(); kerr != nil {
		return errors.Join(err, kerr)
	}
	return fmt.Errorf("%w (killed)", err)
}

func (p *process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil || isClosed(done) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
		return fmt.Errorf("%s (pid %d) still running %s after %s", p.name, cmd.Process.Pid, timeout, sig)
	}
}

// signal sends sig to the running process without waiting (SIGSTOP and
// SIGCONT, to make a server hang and resume).
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil || isClosed(done) {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

// pid returns the pid of the current run, or 0.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// runLog returns what the current run has written to the log so far.
func (p *process) runLog() string {
	p.mu.Lock()
	off := p.logOffset
	p.mu.Unlock()
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

// logTail returns the last lines of the current run's log, for errors.
func (p *process) logTail() string {
	s := strings.TrimRight(p.runLog(), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "--- last lines of %s ---\n", p.logPath)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// waitReady polls probe until it succeeds, the process exits or the timeout
// passes. An exit caused by a taken port is reported as errPortInUse.
func (p *process) waitReady(timeout time.Duration, probe func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	exited := p.exited()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := probe(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w\n%s", p.name, timeout, err, p.logTail())
		}
		select {
		case <-exited:
			if strings.Contains(p.runLog(), "already in use") {
				return fmt.Errorf("%s exited: %w\n%s", p.name, errPortInUse, p.logTail())
			}
			return fmt.Errorf("%s exited before accepting connections\n%s", p.name, p.logTail())
		case <-ticker.C:
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// shortSocketPath returns dir/name if it fits in a unix socket address
// (108 bytes on Linux), or else a path in a new short directory that the
// returned cleanup removes.
func shortSocketPath(dir, name string) (path string, cleanup func(), err error) {
	const maxLen = 100
	p := filepath.Join(dir, name)
	if len(p) <= maxLen {
		return p, func() {}, nil
	}
	d, err := os.MkdirTemp("/tmp", "txo")
	if err != nil {
		return "", nil, fmt.Errorf("socket dir: %w", err)
	}
	return filepath.Join(d, name), func() { os.RemoveAll(d) }, nil
}
