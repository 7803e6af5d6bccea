package console

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// A console form body is bounded before anything parses it: a 1 MiB
// multipart login (the key after a large file part) is cut at
// maxFormBytes, so its fields never reach the handler and nothing is held
// in memory or spooled to disk beyond the bound.
func TestFormBodyIsBounded(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	var got string
	var readErr error
	r.Group(cookiePath, limitFormBody).POST("/login", func(c *gin.Context) {
		readErr = c.Request.ParseMultipartForm(maxFormBytes)
		got = c.PostForm("key")
		c.Status(http.StatusNoContent)
	})
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	f, _ := w.CreateFormFile("blob", "blob.bin")
	_, _ = f.Write(bytes.Repeat([]byte("x"), 1<<20))
	_ = w.WriteField("key", "admin-key")
	_ = w.Close()
	req := httptest.NewRequest(http.MethodPost, cookiePath+"/login", &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	r.ServeHTTP(httptest.NewRecorder(), req)
	if got != "" || readErr == nil || !strings.Contains(readErr.Error(), "too large") {
		t.Fatalf("key %q, parse error %v; want the body cut at %d bytes", got, readErr, maxFormBytes)
	}

	// A normal form passes.
	req = httptest.NewRequest(http.MethodPost, cookiePath+"/login", strings.NewReader("key=admin-key"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.ServeHTTP(httptest.NewRecorder(), req)
	if got != "admin-key" {
		t.Fatalf("small form: key %q, want admin-key", got)
	}
}
