package console

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// Mount registers the console's routes on r under /console. Only the login
// form, its POST and the two static assets are served without a session;
// every other route answers 303 to the login form (a page) or 401 (the
// overview's JSON) without one.
func (c *Console) Mount(r gin.IRouter) {
	g := r.Group(cookiePath, securityHeaders, limitFormBody)
	g.GET("/assets/console.css", func(ctx *gin.Context) { c.asset(ctx, "text/css; charset=utf-8", c.pages.css) })
	g.GET("/assets/console.js", func(ctx *gin.Context) { c.asset(ctx, "text/javascript; charset=utf-8", c.pages.js) })
	g.GET("/login", c.loginForm)
	g.POST("/login", c.login)

	a := g.Group("", c.requireSession)
	a.GET("", func(ctx *gin.Context) { ctx.Redirect(http.StatusSeeOther, cookiePath+"/overview") })
	a.POST("/logout", c.requireCSRF, c.logout)
	a.GET("/overview", c.overviewPage)
	a.GET("/overview.json", c.overviewJSON)
	a.GET("/orders", c.ordersPage)
	a.GET("/orders/:id", c.orderPage)
	a.GET("/spill", c.spillPage)
	a.GET("/spill/replay", c.spillConfirm)
	a.POST("/spill/replay", c.requireCSRF, c.spillReplay)
	a.GET("/dead-letters", c.deadLettersPage)
	a.GET("/dead-letters/replay", c.deadLetterConfirm)
	a.POST("/dead-letters/replay", c.requireCSRF, c.deadLetterReplay)
	a.GET("/dead-letters/:id", c.deadLetterPage)
	a.GET("/refunds", c.refundsPage)
}

func (c *Console) asset(g *gin.Context, contentType string, body []byte) {
	// Assets carry no data; they change only with the binary.
	g.Header("Cache-Control", "public, max-age=300")
	g.Data(http.StatusOK, contentType, body)
}

// ctxSession and friends are the gin keys requireSession sets.
const (
	keySession           = "console.session"
	keyRevocationUnknown = "console.revocation_unknown"
)

func (c *Console) requireSession(g *gin.Context) {
	cookie, err := g.Cookie(sessionCookie)
	if err != nil {
		c.noSession(g)
		return
	}
	sess, unknown, err := c.sessions.verify(g.Request.Context(), cookie)
	if err != nil {
		c.clearCookie(g, sessionCookie)
		c.noSession(g)
		return
	}
	if unknown {
		c.logger.Warn("session revocation could not be checked (redis); read-only until it can", "admin", sess.Admin)
	}
	g.Set(keySession, sess)
	g.Set(keyRevocationUnknown, unknown)
	g.Next()
}

func (c *Console) noSession(g *gin.Context) {
	if g.Request.Method == http.MethodGet && g.FullPath() != cookiePath+"/overview.json" {
		g.Redirect(http.StatusSeeOther, cookiePath+"/login?next="+url.QueryEscape(g.Request.URL.RequestURI()))
		g.Abort()
		return
	}
	g.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "log in at " + cookiePath + "/login"})
}

// requireCSRF refuses a state change whose form lacks the session's CSRF
// token, or whose session may have been logged out elsewhere.
func (c *Console) requireCSRF(g *gin.Context) {
	sess := g.MustGet(keySession).(session)
	if !c.sessions.checkCSRF(sess, g.PostForm("csrf")) {
		c.logger.Warn("console form refused: missing or wrong CSRF token", "admin", sess.Admin, "path", g.Request.URL.Path)
		c.render(g, http.StatusForbidden, "error", c.view(g, "Refused", "", view{
			Problem: "This form was refused: it did not carry this session's CSRF token. Reload the page and try again."}))
		g.Abort()
		return
	}
	if g.GetBool(keyRevocationUnknown) && g.FullPath() != cookiePath+"/logout" {
		c.render(g, http.StatusServiceUnavailable, "error", c.view(g, "Refused", "", view{
			Problem: "Redis cannot be reached, so this session cannot be checked against logouts: changes are refused until it can. Pages can still be read."}))
		g.Abort()
		return
	}
	g.Next()
}

// view fills the fields every page has.
func (c *Console) view(g *gin.Context, title, nav string, v view) view {
	v.Title, v.Nav = title, nav
	if s, ok := g.Get(keySession); ok {
		sess := s.(session)
		v.Admin, v.CSRF = sess.Admin, c.sessions.csrfToken(sess)
	}
	if v.Flash == "" {
		v.Flash = flash(g)
	}
	return v
}

func (c *Console) secure(g *gin.Context) bool { return c.cfg.SecureCookies || g.Request.TLS != nil }

func (c *Console) setCookie(g *gin.Context, name, value string, maxAge int) {
	http.SetCookie(g.Writer, &http.Cookie{Name: name, Value: value, Path: cookiePath, MaxAge: maxAge,
		HttpOnly: true, Secure: c.secure(g), SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearCookie(g *gin.Context, name string) { c.setCookie(g, name, "", -1) }

type loginData struct {
	Nonce string
	Next  string
}

// loginForm sets a fresh nonce in a cookie and in the form: a login POST
// must carry both (login CSRF: no other site can log a browser in).
func (c *Console) loginForm(g *gin.Context) {
	nonce := randomToken(18)
	c.setCookie(g, loginCookie, nonce, 600)
	c.render(g, http.StatusOK, "login", view{Title: "Log in", Data: loginData{Nonce: nonce, Next: safeNext(g.Query("next"))},
		Flash: loginMessages[g.Query("m")]})
}

func (c *Console) login(g *gin.Context) {
	nonce, err := g.Cookie(loginCookie)
	if err != nil || nonce == "" || g.PostForm("nonce") != nonce {
		g.Redirect(http.StatusSeeOther, cookiePath+"/login?m=expired")
		return
	}
	addr := c.limiter.clientAddr(g.Request)
	attempt, wait, ok := c.limiter.take(addr)
	if !ok {
		c.logins.WithLabelValues("limited").Inc()
		c.logger.Warn("console login refused: too many failed logins from this address", "remote", addr.String(), "retry_after", wait.String())
		secs := max(1, int(math.Ceil(wait.Seconds())))
		g.Header("Retry-After", strconv.Itoa(secs))
		c.renderLogin(g, http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins from your address; try again in %d s.", secs))
		return
	}
	name, keyHash, ok := c.sessions.login(g.PostForm("key"))
	if !ok {
		c.logins.WithLabelValues("wrong_key").Inc()
		c.logger.Warn("console login refused: unknown admin key", "remote", addr.String())
		c.renderLogin(g, http.StatusUnauthorized, "That admin key is not valid.")
		return
	}
	attempt.succeeded()
	c.logins.WithLabelValues("ok").Inc()
	sess, value := c.sessions.issue(name, keyHash)
	c.clearCookie(g, loginCookie)
	c.setCookie(g, sessionCookie, value, int(c.cfg.SessionTTL/time.Second))
	c.logger.Info("console login", "admin", name, "session", sess.ID[:8], "remote", addr.String())
	g.Redirect(http.StatusSeeOther, safeNext(g.PostForm("next")))
}

// renderLogin shows the login form again, with a fresh nonce and problem.
func (c *Console) renderLogin(g *gin.Context, status int, problem string) {
	nonce := randomToken(18)
	c.setCookie(g, loginCookie, nonce, 600)
	c.render(g, status, "login", view{Title: "Log in", Problem: problem,
		Data: loginData{Nonce: nonce, Next: safeNext(g.PostForm("next"))}})
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if next == "" || err != nil || u.IsAbs() || u.Host != "" || len(u.Path) < len(cookiePath) || u.Path[:len(cookiePath)] != cookiePath {
		return cookiePath + "/overview"
	}
	return u.RequestURI()
}

func (c *Console) logout(g *gin.Context) {
	sess := g.MustGet(keySession).(session)
	ctx, cancel := context.WithTimeout(g.Request.Context(), c.cfg.Timeout)
	defer cancel()
	err := c.sessions.revoke(ctx, sess)
	c.clearCookie(g, sessionCookie)
	m := "out"
	if err != nil {
		// Revoked here; other replicas learn of it only through Redis.
		c.logger.Warn("console logout not shared: redis unreachable", "admin", sess.Admin, "error", err)
		m = "out_local"
	}
	c.logger.Info("console logout", "admin", sess.Admin, "session", sess.ID[:8])
	g.Redirect(http.StatusSeeOther, cookiePath+"/login?m="+m)
}

// loginMessages are what the login form may say (by code, so that a link
// cannot put words on the page).
var loginMessages = map[string]string{
	"expired": "The login form expired; try again.",
	"out":     "Logged out.",
	"out_local": "Logged out on this server. Redis could not be reached, so other orderd replicas accept " +
		"this session until it expires (at most console.session_ttl after login).",
}

// admin returns the logged-in admin's name, for the audit log.
func admin(g *gin.Context) string { return g.MustGet(keySession).(session).Admin }

// readCtx bounds the reads of one page.
func (c *Console) readCtx(g *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(g.Request.Context(), c.cfg.Timeout)
}

// errorPage shows what could not be read and why.
func (c *Console) errorPage(g *gin.Context, status int, title, nav, problem string) {
	c.render(g, status, "error", c.view(g, title, nav, view{Problem: problem}))
}

// describe turns a dependency error into a sentence for an operator.
func describe(what string, err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return what + ": timed out"
	}
	return what + ": " + err.Error()
}
