// Package testenv starts real mariadbd and redis-server processes for
// tests: each in its own temporary directory, on a free port on 127.0.0.1,
// with no configuration file read, and killed when the test (or the test
// binary) ends. Servers can be killed with SIGKILL, stopped gracefully and
// started again on the same port with their data intact, which is what
// tests of "MySQL is down" and "Redis is down" need.
//
// # Sharing
//
// Start-up is fast (about 0.2–0.5 s for mariadbd, 50 ms for redis-server)
// but not free, so a package shares one server of each kind between its
// tests, started in TestMain, and each test takes a fresh database from it:
//
//	var (
//		mysqlSrv *testenv.MySQLServer
//		redisSrv *testenv.RedisServer
//	)
//
//	func TestMain(m *testing.M) {
//		my, stopMySQL, err := testenv.StartSharedMySQL()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err) // names the apt-get package if a binary is missing
//			os.Exit(1)
//		}
//		rd, stopRedis, err := testenv.StartSharedRedis()
//		if err != nil {
//			stopMySQL()
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		mysqlSrv, redisSrv = my, rd
//		code := m.Run()
//		stopRedis()
//		stopMySQL()
//		os.Exit(code)
//	}
//
//	func TestPlace(t *testing.T) {
//		t.Parallel()
//		db, err := sql.Open("mysql", mysqlSrv.NewDatabase(t)) // empty, dropped when t ends
//		...
//		rdb := redis.NewClient(&redis.Options{Addr: redisSrv.Addr(), DB: redisSrv.NewDB(t)}) // empty, flushed when t ends
//		...
//	}
//
// A package whose test binary also runs without databases (fuzz workers
// re-run TestMain) can start the shared server on first use instead, with
// a sync.Once around StartSharedMySQL, and call the stop function after
// m.Run if it was started.
//
// Tests that kill, stop or restart a server start a private one instead,
// so that they do not disturb the others:
//
//	func TestStoreUnavailable(t *testing.T) {
//		srv := testenv.MySQL(t) // killed when t ends
//		store := openStore(t, srv.DSN())
//		if err := srv.Kill(); err != nil {
//			t.Fatal(err)
//		}
//		// ... expect "store unavailable" ...
//		if err := srv.Start(); err != nil { // same port, same data
//			t.Fatal(err)
//		}
//	}
//
// # MariaDB
//
// Every server has the database txorder and the user txorder, password
// txorder, with all privileges, reachable over TCP; DSN and DSNFor return
// go-sql-driver/mysql DSNs with parseTime=true and a 5 s dial timeout. The
// server runs with utf8mb4, time zone +00:00, binary log off and
// innodb_flush_log_at_trx_commit=1, so a commit that returned survives
// Kill. mariadb-install-db runs once per machine and mariadbd version: its
// result is kept under $TMPDIR/txorder-testenv-<uid>/ and copied for each
// server.
//
// # Redis
//
// redis-server runs with appendonly yes, appendfsync always and no RDB
// snapshots, so a write that was acknowledged survives Kill. It has 1024
// logical databases; NewDB hands out 1..1023 (never 0) to one test at a
// time.
//
// # Requirements
//
// mariadbd, mariadb-install-db and redis-server must be in PATH or in
// /usr/sbin or /usr/bin (Debian: apt-get install -y mariadb-server
// redis-server, or scripts/install-deps.sh). A missing binary fails the
// test, never skips it. On Linux the servers get SIGKILL from the kernel if
// the test binary dies, so a crashed test leaves nothing running.
package testenv
