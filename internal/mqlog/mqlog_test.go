package mqlog

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/rlog"
)

func TestInstallRoutesAndDemotes(t *testing.T) {
	var buf strings.Builder
	Install(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	rlog.Error("executeLocalTransaction but state unexpected", map[string]interface{}{"localState": 0})
	rlog.Info("rebalance done", nil)
	rlog.Error("send ReqENDTransaction to broker error", map[string]interface{}{"callback": "127.0.0.1:1"})
	got := buf.String()
	if strings.Contains(got, "state unexpected") || strings.Contains(got, "rebalance done") {
		t.Fatalf("routine client lines reached the info log:\n%s", got)
	}
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, "send ReqENDTransaction") ||
		!strings.Contains(got, "component=rocketmq-client") || !strings.Contains(got, "callback=127.0.0.1:1") {
		t.Fatalf("a real client error is missing or lacks its fields:\n%s", got)
	}
}
