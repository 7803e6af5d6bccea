// Package browser starts Debian's headless Chromium for tests and drives it
// with chromedp: the operator console and the chaos timeline are tested in
// a real browser, as an operator would see them.
package browser

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// candidates are where Debian's package puts the browser.
var candidates = []string{"chromium", "chromium-browser", "/usr/bin/chromium", "/usr/lib/chromium/chromium"}

// Path returns the Chromium binary, or "" when none is installed.
func Path() string {
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	return ""
}

// New starts a headless Chromium with a fresh profile in a temporary
// directory and returns a browser tab's context, cancelled (and the
// browser killed) at the end of the test. It fails the test, naming the
// apt-get command, when Chromium is not installed.
func New(t testing.TB) context.Context {
	t.Helper()
	path := Path()
	if path == "" {
		t.Fatal("chromium is not installed: run `apt-get install -y chromium` (as root; `make test` installs it through scripts/install-deps.sh)")
	}
	profile := filepath.Join(t.TempDir(), "profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	// Start the browser now, so that a broken install fails here. (The
	// first run's context must have no deadline: it bounds the browser.)
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	return ctx
}

// Do runs steps in the tab with a deadline, so that a page that never
// shows what a test waits for fails the test instead of hanging it.
func Do(tab context.Context, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tab, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Get runs one action that returns a value in the tab, with a deadline.
func Get[T any](tab context.Context, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tab, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}
