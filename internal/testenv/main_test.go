package testenv

import (
	"fmt"
	"os"
	"testing"
)

// The servers shared by this package's tests, started by TestMain exactly as
// the package documentation tells other packages to.
var (
	sharedMySQL *MySQLServer
	sharedRedis *RedisServer
)

func TestMain(m *testing.M) {
	my, stopMySQL, err := StartSharedMySQL()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedMySQL = my
	rd, stopRedis, err := StartSharedRedis()
	if err != nil {
		stopMySQL()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedRedis = rd
	code := m.Run()
	stopRedis()
	stopMySQL()
	os.Exit(code)
}

func TestSharedStartupTime(t *testing.T) {
	t.Logf("shared %s ready on %s in %s", sharedMySQL.version, sharedMySQL.Addr(), sharedMySQL.startup)
	t.Logf("shared %s ready on %s in %s", sharedRedis.version, sharedRedis.Addr(), sharedRedis.startup)
}
