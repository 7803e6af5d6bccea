package rmqtest

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// ClientRaceSuppressions is a ThreadSanitizer suppressions file for data
// races inside rocketmq-client-go v2.1.2 and the tree library only it
// uses. Known ones: the orderly consumer's processQueue.takeMessages polls
// its message tree without the lock (consumer/process_queue.go:313), and a
// rebalance writes SubscriptionData.SubVersion while the route refresh
// clones it (consumer/push_consumer.go:505 vs internal/model.go:70). A race
// is suppressed only when a frame of those modules is on top of a stack,
// so races in this repository's code are still reported.
const ClientRaceSuppressions = "race:github.com/apache/rocketmq-client-go/v2/\nrace:github.com/emirpasic/gods/\n"

const suppressedEnv = "RMQTEST_CLIENT_RACES_SUPPRESSED"

// SuppressClientRaces makes a race-enabled test binary ignore the data
// races inside rocketmq-client-go (see ClientRaceSuppressions). Call it
// first thing in TestMain: the race runtime reads GORACE only at start-up,
// so it re-executes the binary with GORACE="... suppressions=<file>".
// Without -race it does nothing. It returns only if it did not re-execute.
func SuppressClientRaces() {
	if !raceEnabled {
		return
	}
	if path := os.Getenv(suppressedEnv); path != "" {
		// The race runtime read the file before main; tidy it up.
		_ = os.Remove(path)
		return
	}
	f, err := os.CreateTemp("", "rmqtest-race-*.supp")
	if err != nil {
		fmt.Fprintf(os.Stderr, "rmqtest: cannot write race suppressions: %v\n", err)
		return
	}
	_, _ = f.WriteString(ClientRaceSuppressions)
	_ = f.Close()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rmqtest: cannot re-execute the test binary: %v\n", err)
		return
	}
	env := append(os.Environ(), suppressedEnv+"="+f.Name(),
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" suppressions="+f.Name()))
	err = syscall.Exec(exe, os.Args, env)
	fmt.Fprintf(os.Stderr, "rmqtest: re-exec with race suppressions failed: %v\n", err)
}
