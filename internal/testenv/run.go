package testenv

import (
	"fmt"
	"os"
	"testing"
)

// RunMain runs a test package's tests with the shared servers it asks for:
// for each non-nil pointer it starts that server and stores it there, runs
// m, then stops them. It returns the exit code for os.Exit:
//
//	var sharedMySQL *testenv.MySQLServer
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, nil)) }
//
// A server that cannot start fails the whole package with its reason (the
// apt-get command, when the binary is missing).
func RunMain(m *testing.M, mysql **MySQLServer, redis **RedisServer) int {
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	if mysql != nil {
		srv, stop, err := StartSharedMySQL()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*mysql = srv
		stops = append(stops, stop)
	}
	if redis != nil {
		srv, stop, err := StartSharedRedis()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*redis = srv
		stops = append(stops, stop)
	}
	return m.Run()
}
