package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/txorder/txorder/internal/testenv"
)

var sharedMySQL *testenv.MySQLServer

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &sharedMySQL, nil)) }

func runTool(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), &environment{stdout: &out, stderr: &errOut, environ: environ}, args)
	return code, out.String(), errOut.String()
}

func mysqlEnv(t *testing.T) []string {
	t.Helper()
	dsn, err := mysql.ParseDSN(sharedMySQL.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"TXORDER_MYSQL__ADDR=" + dsn.Addr, "TXORDER_MYSQL__USER=" + dsn.User,
		"TXORDER_MYSQL__PASSWORD=" + dsn.Passwd, "TXORDER_MYSQL__DATABASE=" + dsn.DBName,
	}
}

func TestMigrate(t *testing.T) {
	env := mysqlEnv(t)
	code, out, errOut := runTool(t, env, "migrate", "--config", "", "--status")
	if code != 0 || !strings.Contains(out, "pending") {
		t.Fatalf("status before = %d %q %q", code, out, errOut)
	}
	code, out, errOut = runTool(t, env, "migrate", "--config", "")
	if code != 0 || !strings.Contains(out, "applied migrations [1 2") {
		t.Fatalf("migrate = %d %q %q", code, out, errOut)
	}
	code, out, _ = runTool(t, env, "migrate", "--config", "")
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate = %d %q", code, out)
	}
	code, out, _ = runTool(t, env, "migrate", "--config", "", "--status")
	if code != 0 || strings.Contains(out, "pending") || !strings.Contains(out, "applied") {
		t.Fatalf("status after = %d %q", code, out)
	}
}

func TestUsage(t *testing.T) {
	cases := []struct {
		args     []string
		wantCode int
		wantText string
	}{
		{nil, 2, "Commands:"},
		{[]string{"--help"}, 0, "migrate"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"migrate", "--help"}, 0, "--status"},
		{[]string{"migrate", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"migrate", "extra"}, 2, "unexpected argument"},
	}
	for _, tc := range cases {
		code, out, errOut := runTool(t, nil, tc.args...)
		if code != tc.wantCode || !strings.Contains(out+errOut, tc.wantText) {
			t.Errorf("ordertool %v = %d, out %q err %q; want %d mentioning %q", tc.args, code, out, errOut, tc.wantCode, tc.wantText)
		}
	}
	// MySQL unreachable: exit 1 with the cause, not a hang.
	code, _, errOut := runTool(t, []string{"TXORDER_MYSQL__ADDR=127.0.0.1:1"}, "migrate", "--config", "")
	if code != 1 || !strings.Contains(errOut, "ordertool migrate:") {
		t.Errorf("migrate against nothing = %d %q, want 1 with an error", code, errOut)
	}
}
