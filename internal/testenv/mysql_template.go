package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// mysqlTemplateFormat names the shape of the cached template data dir.
// Bump it whenever mysqlInitSQL or the install options change, so that
// templates built by an older harness are not reused.
const mysqlTemplateFormat = "2"

// Credentials and database present in every server the harness starts.
const (
	mysqlUser     = "txorder"
	mysqlPassword = "txorder"
	mysqlDatabase = "txorder"
)

// mysqlInitSQL runs once per template in bootstrap mode. Bootstrap runs
// with --skip-grant-tables, under which CREATE USER is refused; FLUSH
// PRIVILEGES loads the grant tables and makes it work. Anonymous users are
// dropped so that they cannot shadow txorder@localhost on the socket.
const mysqlInitSQL = `FLUSH PRIVILEGES;
DELETE FROM mysql.global_priv WHERE User = '';
DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';
CREATE DATABASE ` + mysqlDatabase + ` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER '` + mysqlUser + `'@'%' IDENTIFIED BY '` + mysqlPassword + `';
GRANT ALL PRIVILEGES ON *.* TO '` + mysqlUser + `'@'%' WITH GRANT OPTION;
CREATE USER '` + mysqlUser + `'@'localhost' IDENTIFIED BY '` + mysqlPassword + `';
GRANT ALL PRIVILEGES ON *.* TO '` + mysqlUser + `'@'localhost' WITH GRANT OPTION;
`

// mysqlInnoDBArgs are shared by initialisation and every start, so that a
// copied template never has to resize its redo log. Native AIO is off
// because many parallel servers can exhaust fs.aio-max-nr; it does not
// change durability.
var mysqlInnoDBArgs = []string{
	"--innodb-log-file-size=8M",
	"--innodb-buffer-pool-size=64M",
	"--innodb-use-native-aio=0",
	// InnoDB writes its temporary tablespace out in full at every start;
	// 12 MiB of zeros was a fifth of the start-up time.
	"--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
}

// templateTimeout bounds building a template, lock wait included.
const templateTimeout = 3 * time.Minute

// mysqlTemplate returns a data dir initialised for mariadbd (system tables,
// the txorder database and user), building it on first use. Templates are
// cached under os.TempDir() by mariadbd version, so mariadb-install-db runs
// once per machine rather than once per server.
func mysqlTemplate(mariadbd, version string) (string, error) {
	sum := sha256.Sum256([]byte(version + "\x00" + mariadbd + "\x00" + mysqlTemplateFormat))
	parent := filepath.Join(os.TempDir(), fmt.Sprintf("txorder-testenv-%d", os.Geteuid()))
	final := filepath.Join(parent, "mariadb-"+hex.EncodeToString(sum[:6]))
	// The template appears by rename, so if it exists it is complete.
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("template cache dir: %w", err)
	}
	unlock, err := lockFile(final+".lock", templateTimeout)
	if err != nil {
		return "", fmt.Errorf("mariadb template: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(final); err == nil {
		return final, nil // another test binary built it while we waited
	}

	removeStaleBuilds(parent)
	build, err := os.MkdirTemp(parent, "mariadb-build-")
	if err != nil {
		return "", fmt.Errorf("mariadb template: %w", err)
	}
	defer os.RemoveAll(build)
	data := filepath.Join(build, "data")
	if err := initMySQLDataDir(mariadbd, data, filepath.Join(build, "init.log")); err != nil {
		return "", err
	}
	if err := os.Rename(data, final); err != nil {
		return "", fmt.Errorf("mariadb template: %w", err)
	}
	return final, nil
}

// removeStaleBuilds removes build dirs left by test binaries killed while
// building a template. A build in progress is far younger than an hour.
func removeStaleBuilds(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, "mariadb-build-*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(d)
		}
	}
}

// initMySQLDataDir runs mariadb-install-db and then the init SQL in
// bootstrap mode, both without reading any my.cnf.
func initMySQLDataDir(mariadbd, dataDir, logPath string) error {
	installDB, err := findBinary("mariadb-install-db", "mariadb-server")
	if err != nil {
		if installDB, err = findBinary("mysql_install_db", "mariadb-server"); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), templateTimeout)
	defer cancel()

	args := []string{"--no-defaults", "--datadir=" + dataDir, "--skip-test-db", "--skip-name-resolve"}
	args = append(args, rootUserArgs()...)
	args = append(args, mysqlInnoDBArgs...)
	if err := runLogged(ctx, logPath, "", installDB, args...); err != nil {
		return fmt.Errorf("mariadb-install-db: %w", err)
	}

	args = []string{"--no-defaults", "--bootstrap", "--datadir=" + dataDir}
	args = append(args, rootUserArgs()...)
	args = append(args, mysqlInnoDBArgs...)
	if err := runLogged(ctx, logPath, mysqlInitSQL, mariadbd, args...); err != nil {
		return fmt.Errorf("mariadbd --bootstrap: %w", err)
	}
	return nil
}

// rootUserArgs lets mariadbd run as root, which it otherwise refuses.
func rootUserArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// runLogged runs a short-lived command with stdin, appending its output to
// logPath; a failure quotes the end of that output.
func runLogged(ctx context.Context, logPath, stdin, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout = &out
	cmd.Stderr = &out
	// No Pdeathsig here: it is tied to the forking OS thread, which the
	// runtime may retire while this short-lived command still runs. The
	// context bounds its life instead.
	err := cmd.Run()
	if f, ferr := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== %s %s\n%s", name, strings.Join(args, " "), out.Bytes())
		f.Close()
	}
	if err != nil {
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		return fmt.Errorf("%w\n--- last lines of output ---\n%s", err, strings.Join(lines, "\n"))
	}
	return nil
}

// binaryVersion returns the first line of `bin --version`, without the
// binary's path that mariadbd puts in front.
func binaryVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", bin, err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, bin)), nil
}
