package testenv

import (
	"sync"
	"testing"
)

// LazyMySQL is a package's shared mariadbd started on first use, for test
// packages with fuzz targets: fuzz workers run TestMain too but never touch
// MySQL, so they should not each start a server.
//
//	var db testenv.LazyMySQL
//
//	func TestMain(m *testing.M) { code := m.Run(); db.Stop(); os.Exit(code) }
//	// in a test: dsn := db.Get(t).NewDatabase(t)
type LazyMySQL struct {
	once sync.Once
	srv  *MySQLServer
	stop func()
	err  error
}

// Get starts the server on the first call and returns it; a start failure
// fails t (with the apt-get command when the binary is missing).
func (l *LazyMySQL) Get(t testing.TB) *MySQLServer {
	t.Helper()
	l.once.Do(func() { l.srv, l.stop, l.err = StartSharedMySQL() })
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.srv
}

// Stop stops the server if Get started one.
func (l *LazyMySQL) Stop() {
	if l.stop != nil {
		l.stop()
	}
}
