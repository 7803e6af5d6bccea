package testenv

import (
	"path/filepath"
	"testing"
)

// BenchmarkMySQLStart measures MySQL(t): template copy, start and first
// successful login.
func BenchmarkMySQLStart(b *testing.B) {
	for b.Loop() {
		MySQL(b)
	}
}

// BenchmarkMySQLColdInit measures what the template saves:
// mariadb-install-db plus the bootstrap SQL.
func BenchmarkMySQLColdInit(b *testing.B) {
	bin, err := findBinary("mariadbd", "mariadb-server")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		dir := b.TempDir()
		if err := initMySQLDataDir(bin, filepath.Join(dir, "data"), filepath.Join(dir, "init.log")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMySQLRestart measures Kill followed by Start.
func BenchmarkMySQLRestart(b *testing.B) {
	s := MySQL(b)
	for b.Loop() {
		if err := s.Kill(); err != nil {
			b.Fatal(err)
		}
		if err := s.Start(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisStart measures Redis(t).
func BenchmarkRedisStart(b *testing.B) {
	for b.Loop() {
		Redis(b)
	}
}
