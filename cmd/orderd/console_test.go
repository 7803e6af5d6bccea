package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gin-gonic/gin"

	"github.com/txorder/txorder/internal/browser"
	"github.com/txorder/txorder/payment"
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
func screenshots(t *testing.T) string {
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
func payTxn(t *testing.T, addr, id, txn string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"provider_txn_id": txn, "order_id": id, "amount": 100, "currency": "EUR"})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/payments/notify", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(payment.HeaderSignature, payment.Sign(webhookSecret, time.Now(), body))
	res, err := http.DefaultClient.Do(req)
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
	res, err = c.PostForm(base+"/login", url.Values{"key": {key}, "nonce": {nonce}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
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
	routes := a.srv.Handler.(interface{ Routes() gin.RoutesInfo }).Routes()
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
