package testenv

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestPortInUseIsDetected(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	bin, err := findBinary("redis-server", "redis-server")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &RedisServer{port: port, proc: &process{
		name: "redis-server", path: bin, logPath: filepath.Join(dir, "redis.log"),
		args: redisArgs(dir, port),
	}}
	defer s.proc.kill()
	err = s.startAndWait()
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("start on a taken port: err = %v, want errPortInUse", err)
	}
	if !strings.Contains(err.Error(), "last lines of") {
		t.Errorf("error does not quote the log: %v", err)
	}
}
