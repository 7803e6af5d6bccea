package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/console.css assets/console.js
var assetFS embed.FS

// pageNames are the templates besides the layout, one per page.
var pageNames = []string{"login", "overview", "orders", "order", "spill", "confirm", "deadletters", "deadletter", "refunds", "error"}

type pages struct {
	byName map[string]*template.Template
	css    []byte
	js     []byte
}

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "–"
			}
			return v.UTC().Format("2006-01-02 15:04:05.000 UTC")
		case *time.Time:
			if v == nil {
				return "–"
			}
			return v.UTC().Format("2006-01-02 15:04:05.000 UTC")
		}
		return fmt.Sprint(t)
	},
	"deref": func(v *int64) int64 { return *v },
	"money": func(minor int64, currency string) string {
		return strconv.FormatInt(minor, 10) + " " + currency + " (minor units)"
	},
}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	var err error
	if p.css, err = fs.ReadFile(assetFS, "assets/console.css"); err != nil {
		return nil, err
	}
	if p.js, err = fs.ReadFile(assetFS, "assets/console.js"); err != nil {
		return nil, err
	}
	return p, nil
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav names the active tab.
	Nav   string
	Admin string
	CSRF  string
	// Flash reports the outcome of the last action; Problem what went
	// wrong reading the page (a dependency down).
	Flash   string
	Problem string
	Data    any
}

// securityHeaders are set on every console response.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	c.Next()
}

// maxFormBytes bounds a console form's body: the largest form (a replay of
// every dead entry) is a few hundred bytes.
const maxFormBytes = 64 << 10

// limitFormBody bounds every request body the console reads. Without it
// gin parses a multipart form with 32 MiB in memory and file parts beyond
// that on disk, before the login's key or the session is checked.
func limitFormBody(c *gin.Context) {
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	}
	c.Next()
}

// render writes page name with v, or a plain 500 if the template fails
// (rendered to a buffer first, so a failure never sends half a page).
func (c *Console) render(g *gin.Context, status int, name string, v view) {
	var buf bytes.Buffer
	if err := c.pages.byName[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		c.logger.Error("console template failed", "page", name, "error", err)
		g.String(http.StatusInternalServerError, "console: page could not be rendered")
		return
	}
	g.Data(status, "text/html; charset=utf-8", buf.Bytes())
}
