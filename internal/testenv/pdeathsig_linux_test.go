package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dieChildEnv makes the test binary, run again by
// TestServersDieWithTestBinary, print its servers' pids and SIGKILL itself.
const dieChildEnv = "TESTENV_DIE_CHILD"

func TestServersDieWithTestBinary(t *testing.T) {
	if os.Getenv(dieChildEnv) == "1" {
		fmt.Printf("pids %d %d\n", sharedMySQL.proc.pid(), sharedRedis.proc.pid())
		os.Stdout.Sync()
		// No cleanup runs: this is a test binary crashing.
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServersDieWithTestBinary$")
	cmd.Env = append(os.Environ(), dieChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "pids" {
			for _, s := range f[1:] {
				pid, err := strconv.Atoi(s)
				if err != nil || pid <= 0 {
					t.Fatalf("child printed bad pid %q", s)
				}
				pids = append(pids, pid)
			}
		}
	}
	_ = cmd.Wait()
	if len(pids) != 2 {
		t.Fatalf("child printed %d server pids, want 2", len(pids))
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				for _, p := range pids {
					syscall.Kill(p, syscall.SIGKILL)
				}
				t.Fatalf("server pid %d still running after its test binary died", pid)
			}
			time.Sleep(pollInterval)
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
