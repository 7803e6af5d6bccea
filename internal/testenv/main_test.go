package testenv

import (
	"fmt"
	"os"
	"testing"
)

// The servers shared by this package's tests, started by TestMain exactly as
// the package documentation tells other packages to.
var sharedMySQL *MySQLServer

func TestMain(m *testing.M) {
	my, stopMySQL, err := StartSharedMySQL()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedMySQL = my
	code := m.Run()
	stopMySQL()
	os.Exit(code)
}

func TestSharedStartupTime(t *testing.T) {
	t.Logf("shared %s ready on %s in %s", sharedMySQL.version, sharedMySQL.Addr(), sharedMySQL.startup)
}
