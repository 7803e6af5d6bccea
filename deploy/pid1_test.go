package deploy_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The stand-in for a RocketMQ container's process tree, as the image runs
// it: PID 1 runs `sh mqbroker`, which runs `sh runbroker.sh` as a child,
// which runs java as a child; java handles TERM with a shutdown hook that
// takes a while. Here outer.sh → middle.sh → leaf.sh, the leaf recording
// each signal it gets and finishing its "hook" before it exits.
var standIn = map[string]string{
	"outer.sh":  "sh middle.sh\n",
	"middle.sh": "sh leaf.sh\n",
	"leaf.sh": `hook() { echo "$1" >>record; sleep 0.5; echo done >>record; exit 42; }
trap 'hook TERM' TERM
trap 'hook INT' INT
echo started >>record
while :; do sleep 0.1; done
`,
}

// shells are the /bin/sh candidates: dash is the image's (eclipse-temurin
// is Ubuntu), bash is checked too. A missing one fails with how to
// install it.
var shells = []string{"dash", "bash"}

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install it with: apt-get install -y %s", name, pkg)
	}
	return p
}

// namespaceInit starts args as PID 1 of a new PID namespace (unshare
// --pid --fork --mount-proc) in dir, with the given shell as sh, and
// returns the unshare command and PID 1's pid as the test sees it (what
// dockerd signals).
func namespaceInit(t *testing.T, dir, shell string, args ...string) (*exec.Cmd, int, *bytes.Buffer) {
	t.Helper()
	unshare := needTool(t, "unshare", "util-linux")
	// sh inside the namespace is the shell under test.
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(needTool(t, shell, shell), filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--pid", "--fork", "--mount-proc"}
	if os.Geteuid() != 0 {
		flags = append([]string{"--user", "--map-root-user"}, flags...)
	}
	cmd := exec.Command(unshare, append(flags, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	// Killing unshare leaves its child, the namespace's PID 1, running (a
	// shell that ignores TERM loops forever): SIGKILL PID 1 first, which
	// takes every process of the namespace with it.
	var pid1 int
	t.Cleanup(func() {
		if pid1 > 0 {
			_ = syscall.Kill(pid1, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	// PID 1 is unshare's only child.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := childOf(cmd.Process.Pid); pid > 0 {
			pid1 = pid
			return cmd, pid, &out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no child of unshare (pid %d) after 10s; output %q", cmd.Process.Pid, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childOf returns the pid of a child of ppid, from /proc/*/stat.
func childOf(ppid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces: split after ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

func writeStandIn(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range standIn {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func record(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "record"))
	return string(b)
}

func waitRecord(t *testing.T, dir, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(record(dir), want) {
		if time.Now().After(deadline) {
			t.Fatalf("record %q lacks %q after %s", record(dir), want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode waits for cmd (bounded) and returns its exit status.
func exitCode(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitCode()
		default:
			t.Fatal(err)
		}
	case <-time.After(within):
		t.Fatalf("PID 1 still running %s after the signal", within)
	}
	return -1
}

// TestShellAsPID1IgnoresTerm is the defect pid1.sh fixes, reproduced: a
// shell that is PID 1 (today's `command: ["sh", "mqbroker", …]`) drops
// SIGTERM, and the JVM stand-in never hears of it.
func TestShellAsPID1IgnoresTerm(t *testing.T) {
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			dir := writeStandIn(t)
			cmd, pid1, out := namespaceInit(t, dir, shell, "sh", "outer.sh")
			waitRecord(t, dir, "started", 10*time.Second)
			if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second) // a negative: nothing may happen
			if got := record(dir); strings.Contains(got, "TERM") {
				t.Fatalf("the leaf got TERM without the wrapper (record %q, output %q): the kernel no longer drops it", got, out)
			}
			if cmd.ProcessState != nil {
				t.Fatalf("PID 1 exited on TERM: %v", cmd.ProcessState)
			}
		})
	}
}

// TestPID1ForwardsSignals: pid1.sh as PID 1 forwards TERM (docker stop)
// and INT to the whole tree, waits for the leaf to finish its hook after
// both shells above it died, and exits with the command's status.
func TestPID1ForwardsSignals(t *testing.T) {
	wrapper, err := filepath.Abs("pid1.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, shell := range shells {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			name := map[syscall.Signal]string{syscall.SIGTERM: "TERM", syscall.SIGINT: "INT"}[sig]
			t.Run(shell+"/"+name, func(t *testing.T) {
				dir := writeStandIn(t)
				cmd, pid1, out := namespaceInit(t, dir, shell, "sh", wrapper, "sh", "outer.sh")
				waitRecord(t, dir, "started", 10*time.Second)
				if err := syscall.Kill(pid1, sig); err != nil {
					t.Fatal(err)
				}
				code := exitCode(t, cmd, 20*time.Second)
				// The leaf got the signal and finished its hook before PID 1
				// exited (its parents had died at once: no trap).
				if got, want := record(dir), "started\n"+name+"\ndone\n"; got != want {
					t.Errorf("record %q, want %q (output %q)", got, want, out)
				}
				// outer.sh died of the signal: 128 + its number. Except that
				// bash, on INT, waits for its foreground child and dies of
				// INT only if the child did: the leaf handled it and exited
				// 42, so both shells above it exit 42.
				want := 128 + int(sig)
				if shell == "bash" && sig == syscall.SIGINT {
					want = 42
				}
				if code != want {
					t.Errorf("exit status %d, want %d (output %q)", code, want, out)
				}
			})
		}
	}
}

// TestPID1ExitStatus: without a signal, pid1.sh exits with the command's
// status, once the command's whole group is gone.
func TestPID1ExitStatus(t *testing.T) {
	wrapper, err := filepath.Abs("pid1.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			dir := t.TempDir()
			// The command exits 3 at once, leaving a member of its group
			// running 1 s: pid1.sh must wait for it.
			cmd, _, out := namespaceInit(t, dir, shell, "sh", wrapper, "sh", "-c", "(sleep 1; echo late >record) & exit 3")
			if code := exitCode(t, cmd, 20*time.Second); code != 3 {
				t.Errorf("exit status %d, want 3 (output %q)", code, out)
			}
			if got := record(dir); got != "late\n" {
				t.Errorf("record %q: pid1.sh exited before its group", got)
			}
			usage := exec.Command(needTool(t, shell, shell), wrapper)
			if err := usage.Run(); usage.ProcessState.ExitCode() != 2 {
				t.Errorf("no command: %v, want exit status 2", err)
			}
		})
	}
}
