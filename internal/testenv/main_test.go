package testenv

import (
	"os"
	"testing"
)

// The servers shared by this package's tests, started by TestMain exactly as
// the package documentation tells other packages to.
var (
	sharedMySQL *MySQLServer
	sharedRedis *RedisServer
)

func TestMain(m *testing.M) { os.Exit(RunMain(m, &sharedMySQL, &sharedRedis)) }

func TestSharedStartupTime(t *testing.T) {
	t.Logf("shared %s ready on %s in %s", sharedMySQL.version, sharedMySQL.Addr(), sharedMySQL.startup)
	t.Logf("shared %s ready on %s in %s", sharedRedis.version, sharedRedis.Addr(), sharedRedis.startup)
}
