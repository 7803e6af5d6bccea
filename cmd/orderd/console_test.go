package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gin-gonic/gin"

	"github.com/txorder/txorder/internal/browser"
	"github.com/txorder/txorder/internal/testenv"
)

const (
	consoleAdminKey = "console-admin-key-0123456789"
	consoleSecret   = "console-session-secret-0123456789abcdef"
)

// consoleEnv turns the console on: one admin, a session secret, and spill
// entries that die after two failed placements.
var consoleEnv = []string{
	"TXORDER_AUTH__ADMIN_KEYS=ops:" + consoleAdminKey,
	"TXORDER_CONSOLE__SESSION_SECRET=" + consoleSecret,
	"TXORDER_SPILL__MAX_ATTEMPTS=2",
}

// screenshots returns where the test saves its screenshots: docs/console
// when TXORDER_CONSOLE_SCREENSHOTS=docs (to refresh the README's pictures),
// otherwise $TXORDER_TEST_ARTIFACTS/console or a temporary directory.
func screenshots(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "console")
	switch {
	case os.Getenv("TXORDER_CONSOLE_SCREENSHOTS") == "docs":
		dir = filepath.Join("..", "..", "docs", "console")
	case os.Getenv("TXORDER_TEST_ARTIFACTS") != "":
		dir = filepath.Join(os.Getenv("TXORDER_TEST_ARTIFACTS"), "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsoleInBrowser drives the console in headless Chromium as an
// operator would: a wrong key is refused, the right one logs in, an order
// is found by id, a dead spill entry is replayed and placed, a form
// without its CSRF token is refused, the overview follows a MySQL SIGKILL
// by itself (MySQL down, the order cache growing), and logout ends the
// session. Each page is saved as a PNG.
func TestConsoleInBrowser(t *testing.T) {
	tab := browser.New(t)
	s := newStack(t, stackOptions{privateMySQL: true, env: consoleEnv})
	m := s.orderd()
	base := "http://" + m.Addr() + "/console"
	dir := screenshots(t)
	const wait = 30 * time.Second
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := browser.Do(tab, wait, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := browser.Get(tab, wait, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		png, err := browser.Get(tab, wait, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	stored := place(t, m.Addr(), "console-stored")
	if stored.code != http.StatusCreated {
		t.Fatalf("place = %+v, want 201", stored)
	}
	// Paid twice: the second payment is a refund to make.
	if !s.pay(m.Addr(), stored.id) || payTxn(t, m.Addr(), stored.id, "second-"+stored.id) != http.StatusConflict {
		t.Fatal("paying twice did not record a refund")
	}

	// Without a session every page sends the browser to the login form.
	do("open the overview", chromedp.Navigate(base+"/overview"), chromedp.WaitVisible(chromedp.ID("key")))
	if loc, _ := browser.Get(tab, wait, chromedp.Location()); !strings.Contains(loc, "/console/login") {
		t.Fatalf("without a session the overview went to %s, want the login form", loc)
	}
	shot("login")
	do("log in with a wrong key", chromedp.SendKeys(chromedp.ID("key"), "not-an-admin-key-0123456789"),
		chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("problem")))
	if got := text("#problem"); !strings.Contains(got, "not valid") {
		t.Fatalf("wrong key: page says %q", got)
	}
	do("log in", chromedp.SendKeys(chromedp.ID("key"), consoleAdminKey), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS(`[data-check="mysql"].up`)))
	if got := text(".who"); got != "ops" {
		t.Fatalf("logged in as %q, want ops", got)
	}

	do("find the order by id", chromedp.Navigate(base+"/orders"), chromedp.SendKeys(chromedp.ID("q"), stored.id),
		chromedp.Click(chromedp.ID("find")), chromedp.WaitVisible(chromedp.ID("timeline")))
	if got := text("#where"); !strings.Contains(got, "STORED") || !strings.Contains(got, "PAID") {
		t.Fatalf("order page says %q, want STORED and PAID", got)
	}
	shot("order")
	do("list orders", chromedp.Navigate(base+"/orders"), chromedp.WaitVisible(chromedp.ID("orders")))
	shot("orders")
	do("refunds", chromedp.Navigate(base+"/refunds"), chromedp.WaitVisible(chromedp.ID("refunds")))
	if got := text("#refunds"); !strings.Contains(got, stored.id) || !strings.Contains(got, "paid twice") {
		t.Fatalf("refunds page lacks the double payment: %q", got)
	}
	shot("refunds")

	// A dead spill entry: RocketMQ refuses every send until it dies.
	s.mq.FailSends(1)
	queued := place(t, m.Addr(), "console-queued")
	if queued.code != http.StatusAccepted || queued.status != "QUEUED" {
		t.Fatalf("place with failing sends = %+v, want 202 QUEUED", queued)
	}
	waitFor(t, wait, "the spill entry dead", func() bool { _, dead := s.spillDepth(t); return dead == 1 })
	replay := fmt.Sprintf(`a[data-replay="%s"]`, queued.id)
	do("dead entries", chromedp.Navigate(base+"/spill?state=dead"), chromedp.WaitVisible(chromedp.CSS(replay)))
	shot("spill-dead")

	// A state change without the session's CSRF token is refused, even
	// from the console's own origin with the session cookie.
	status, err := browser.Get(tab, wait, chromedp.Evaluate[int](`fetch("/console/spill/replay", {method: "POST",
		headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "order_id=`+queued.id+`"}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Fatalf("replay posted without a CSRF token = %d %v, want 403", status, err)
	}
	if _, dead := s.spillDepth(t); dead != 1 {
		t.Fatalf("the refused form changed the spill queue: %d dead", dead)
	}

	s.mq.ClearFaults()
	do("replay the dead entry", chromedp.Click(chromedp.CSS(replay)), chromedp.WaitVisible(chromedp.ID("confirm")))
	shot("spill-confirm")
	do("confirm", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash")))
	waitFor(t, wait, "the replayed order placed", func() bool { return s.rowStatus(queued.id) == "PENDING_PAYMENT" })
	do("the replayed order", chromedp.Navigate(base+"/orders/"+queued.id), chromedp.WaitVisible(chromedp.ID("timeline")))
	if got := text("#where"); !strings.Contains(got, "STORED") {
		t.Fatalf("replayed order page says %q, want STORED", got)
	}

	// The overview follows a MySQL outage by itself (its script refreshes
	// it): MySQL down, its breaker open, the order cache growing.
	do("overview", chromedp.Navigate(base+"/overview"), chromedp.WaitVisible(chromedp.CSS(`[data-check="mysql"].up`)))
	if got := text(`[data-figure="order_cache_size"]`); got != "0" {
		t.Fatalf("order cache before the outage = %q, want 0", got)
	}
	shot("overview")
	if err := s.my.Kill(); err != nil {
		t.Fatal(err)
	}
	const cached = 3
	for i := range cached {
		if p := place(t, m.Addr(), fmt.Sprintf("console-cached-%d", i)); p.code != http.StatusAccepted || p.status != "ACCEPTED" {
			t.Fatalf("place with MySQL killed = %+v, want 202 ACCEPTED", p)
		}
	}
	if _, err := browser.Get(tab, wait, chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector('[data-check="mysql"]').classList.contains("down") &&
		 document.querySelector('[data-figure="order_cache_size"]').textContent === "%d"`, cached),
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(wait))); err != nil {
		t.Fatalf("the overview did not show MySQL down with %d cached orders without a reload: %v", cached, err)
	}
	shot("overview-mysql-down")

	do("log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("key")))
	if got := text("#flash"); !strings.Contains(got, "Logged out") {
		t.Fatalf("after logout the page says %q", got)
	}
	do("overview after logout", chromedp.Navigate(base+"/overview"), chromedp.WaitVisible(chromedp.ID("key")))
}

// payTxn posts a signed payment of order id under provider transaction
// txn and returns the status code.
func payTxn(t testing.TB, addr, id, txn string) int {
	t.Helper()
	res, err := http.DefaultClient.Do(testenv.PaymentRequest(t, "http://"+addr, webhookSecret, txn, id))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// consoleClient is an HTTP client with a cookie jar that does not follow
// redirects, so that tests see each answer.
func consoleClient(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// consoleLogin logs c in with key and returns the session cookie's value
// ("" when refused) and the login POST's status.
func consoleLogin(t testing.TB, c *http.Client, base, key string) (string, int) {
	t.Helper()
	res := consoleLoginAs(t, c, base, key, "")
	for _, ck := range res.Cookies() {
		if ck.Name == "txo_console" && ck.Value != "" {
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", ck)
			}
			return ck.Value, res.StatusCode
		}
	}
	return "", res.StatusCode
}

// consoleLoginAs posts the login form as a browser would (nonce cookie
// first), with an X-Forwarded-For header when xff is set, and returns the
// POST's answer (body closed).
func consoleLoginAs(t testing.TB, c *http.Client, base, key, xff string) *http.Response {
	t.Helper()
	res, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	u, _ := url.Parse(base)
	var nonce string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "txo_console_login" {
			nonce = ck.Value
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"key": {key}, "nonce": {nonce}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// TestConsoleLoginLimit: failed logins from one address are bounded
// (burst 3, then one an hour here): beyond, every login from it, even with
// the right key, is answered 429 with Retry-After before the key is
// checked, and logged. Successful logins do not count; an X-Forwarded-For
// from a peer that is not a trusted proxy changes nothing.
func TestConsoleLoginLimit(t *testing.T) {
	s := newStack(t, stackOptions{env: append(append([]string{}, consoleEnv...),
		"TXORDER_CONSOLE__LOGINS__BURST=3", "TXORDER_CONSOLE__LOGINS__EVERY=1h")})
	var logs lockedBuffer
	m := NewMain(s.cfg, slog.New(slog.NewTextHandler(io.MultiWriter(testenv.LogWriter(t), &logs), nil)))
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	base := "http://" + m.Addr() + "/console"
	const wrong = "wrong-key-0123456789abcdef"

	for i := range 5 {
		if cookie, code := consoleLogin(t, consoleClient(t), base, consoleAdminKey); cookie == "" || code != http.StatusSeeOther {
			t.Fatalf("login %d with the right key = %d", i, code)
		}
	}
	for i := range 3 {
		// A client's own X-Forwarded-For: 127.0.0.1 is no trusted proxy.
		res := consoleLoginAs(t, consoleClient(t), base, wrong, fmt.Sprintf("198.51.100.%d", i))
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong key %d = %d, want 401 (within the burst)", i, res.StatusCode)
		}
	}
	for _, key := range []string{wrong, consoleAdminKey} {
		res := consoleLoginAs(t, consoleClient(t), base, key, "198.51.100.77")
		secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
		if res.StatusCode != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 3600 {
			t.Fatalf("login after 3 failures = %d, Retry-After %q; want 429 with up to 3600 s", res.StatusCode, res.Header.Get("Retry-After"))
		}
		for _, ck := range res.Cookies() {
			if ck.Name == "txo_console" && ck.Value != "" {
				t.Fatal("a refused login set a session cookie")
			}
		}
	}
	if got := metricValue(t, m.Addr(), `txorder_console_logins_total{outcome="limited"}`); got != 2 {
		t.Errorf("limited logins counted = %v, want 2", got)
	}
	if got := metricValue(t, m.Addr(), `txorder_console_logins_total{outcome="wrong_key"}`); got != 3 {
		t.Errorf("wrong keys counted = %v, want 3", got)
	}
	if l := logs.String(); !strings.Contains(l, "too many failed logins") || !strings.Contains(l, "remote=127.0.0.1") {
		t.Errorf("no log line for the refused logins naming the address:\n%s", l)
	}
}

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestConsoleFastCommitRate: the overview counts the paid orders the fast
// commit released per minute (the broker's first check-back is a minute
// away, so only the fast commit can have ended them), and none left to
// the check-back; an order's timeline shows its event committed by it.
func TestConsoleFastCommitRate(t *testing.T) {
	s := newStack(t, stackOptions{brokerTxTimeout: time.Minute, env: consoleEnv})
	m := s.orderd()
	const n = 3
	ids := s.placeRecorded(m.Addr(), "console-fast", n)
	for _, id := range ids {
		if !s.pay(m.Addr(), id) {
			t.Fatalf("pay %s refused", id)
		}
	}
	waitFor(t, 20*time.Second, "the fast commits accepted", func() bool {
		return metricValue(t, m.Addr(), `txorder_fastcommit_accepted_total{action="commit"}`) == n
	})
	base := "http://" + m.Addr() + "/console"
	cookie, code := consoleLogin(t, consoleClient(t), base, consoleAdminKey)
	if cookie == "" {
		t.Fatalf("login = %d", code)
	}
	type rate struct {
		Name      string  `json:"name"`
		PerMinute float64 `json:"per_minute"`
		Known     bool    `json:"known"`
	}
	rates := func() map[string]rate {
		req, _ := http.NewRequest(http.MethodGet, base+"/overview.json", nil)
		req.AddCookie(&http.Cookie{Name: "txo_console", Value: cookie})
		res, err := consoleClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var ov struct {
			Rates []rate `json:"rates"`
		}
		if err := json.NewDecoder(res.Body).Decode(&ov); err != nil {
			t.Fatal(err)
		}
		out := map[string]rate{}
		for _, r := range ov.Rates {
			out[r.Name] = r
		}
		return out
	}
	// The sampler reads the counters every 5 s; the first sample after
	// the payments shows them.
	waitFor(t, 30*time.Second, "fast commits per minute on the overview", func() bool {
		return rates()["fast commits"].PerMinute >= n
	})
	r := rates()
	if left := r["fast commits left to the check-back"]; !left.Known || left.PerMinute != 0 {
		t.Errorf("fast commits left to the check-back = %+v, want known and 0", left)
	}
	if _, ok := r["check-back answers"]; !ok {
		t.Errorf("no check-back rate on the overview: %+v", r)
	}
	// The order's timeline says how its event was committed.
	req, _ := http.NewRequest(http.MethodGet, base+"/orders/"+ids[0], nil)
	req.AddCookie(&http.Cookie{Name: "txo_console", Value: cookie})
	res, err := consoleClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "fast commit was accepted by the broker") {
		t.Errorf("order page = %d, without the fast commit in its timeline:\n%s", res.StatusCode, page)
	}
}

// TestConsoleSessions checks the console's guard at the HTTP level on two
// replicas sharing MySQL, Redis and the session secret: every route but
// the login form and the assets needs a session; a session opened on one
// replica works on the other; logging out on one ends it on both (Redis);
// pages carry a CSP without inline scripts.
func TestConsoleSessions(t *testing.T) {
	s := newStack(t, stackOptions{env: consoleEnv})
	a := s.orderd()
	// A second replica: its own RocketMQ instance name (the client allows
	// one producer group per instance in a process).
	s.cfg.RocketMQ.InstanceName += "-b"
	b := s.orderd()
	baseA, baseB := "http://"+a.Addr()+"/console", "http://"+b.Addr()+"/console"

	public := map[string]bool{"GET /console/login": true, "POST /console/login": true,
		"GET /console/assets/console.css": true, "GET /console/assets/console.js": true}
	anon := consoleClient(t)
	routes := a.api.(interface{ Routes() gin.RoutesInfo }).Routes()
	checked := 0
	for _, r := range routes {
		if !strings.HasPrefix(r.Path, "/console") || public[r.Method+" "+r.Path] {
			continue
		}
		path := strings.NewReplacer(":id", "1").Replace(r.Path)
		req, _ := http.NewRequest(r.Method, "http://"+a.Addr()+path, strings.NewReader("order_id=x&all=1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		loc := res.Header.Get("Location")
		switch {
		case res.StatusCode == http.StatusSeeOther && strings.HasPrefix(loc, "/console/login"):
		case res.StatusCode == http.StatusUnauthorized:
		default:
			t.Errorf("%s %s without a session = %d (Location %q), want 303 to the login form or 401", r.Method, r.Path, res.StatusCode, loc)
		}
		checked++
	}
	if checked < 14 {
		t.Fatalf("only %d console routes checked", checked)
	}

	if cookie, code := consoleLogin(t, consoleClient(t), baseA, "wrong-key-0123456789abcdef"); cookie != "" || code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong key = %d, cookie %q", code, cookie)
	}
	cookie, code := consoleLogin(t, consoleClient(t), baseA, consoleAdminKey)
	if cookie == "" || code != http.StatusSeeOther {
		t.Fatalf("login = %d, no session cookie", code)
	}
	get := func(base, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.AddCookie(&http.Cookie{Name: "txo_console", Value: cookie})
		res, err := consoleClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for _, base := range []string{baseA, baseB} {
		res := get(base, "/overview")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("overview on %s with the session = %d", base, res.StatusCode)
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("CSP = %q", csp)
		}
	}

	// Log out on A with the session's CSRF token (read from a page).
	c := consoleClient(t)
	u, _ := url.Parse(baseA)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "txo_console", Value: cookie, Path: "/console"}})
	res, err := c.Get(baseA + "/overview")
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	_, _ = page.ReadFrom(res.Body)
	res.Body.Close()
	token := between(page.String(), `name="csrf" value="`, `"`)
	if token == "" {
		t.Fatal("no CSRF token in the overview")
	}
	res, err = c.PostForm(baseA+"/logout", url.Values{"csrf": {token}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "m=out") {
		t.Fatalf("logout = %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	// The old cookie, replayed, is refused by both replicas.
	for _, base := range []string{baseA, baseB} {
		if res := get(base, "/overview"); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("overview on %s after logout = %d, want 303 to the login form", base, res.StatusCode)
		}
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}
