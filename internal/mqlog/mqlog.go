// Package mqlog routes rocketmq-client-go's logger (rlog, a process-wide
// logrus instance) into the service's slog logger, so its lines share the
// service's format and level, and demotes its noise.
package mqlog

import (
	"log/slog"
	"strings"

	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// Install makes rlog write to logger. rlog is global to the process, so only
// cmd/ calls this, once.
func Install(logger *slog.Logger) {
	rlog.SetLogger(adapter{logger.With("component", "rocketmq-client")})
}

type adapter struct{ l *slog.Logger }

// demoted are messages the client logs as errors in normal operation.
var demoted = []string{
	// Logged for every local transaction that does not answer COMMIT at
	// once, which for txorder is every placement (the event waits for
	// payment).
	"executeLocalTransaction but state unexpected",
}

func attrs(fields map[string]interface{}) []any {
	out := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		out = append(out, k, v)
	}
	return out
}

// The client logs routine state (rebalances, route updates) at info; that
// is debug for a service log.
func (a adapter) Debug(msg string, fields map[string]interface{}) { a.l.Debug(msg, attrs(fields)...) }
func (a adapter) Info(msg string, fields map[string]interface{})  { a.l.Debug(msg, attrs(fields)...) }
func (a adapter) Warning(msg string, fields map[string]interface{}) {
	a.l.Warn(msg, attrs(fields)...)
}

func (a adapter) Error(msg string, fields map[string]interface{}) {
	for _, d := range demoted {
		if strings.HasPrefix(msg, d) {
			a.l.Debug(msg, attrs(fields)...)
			return
		}
	}
	a.l.Warn(msg, attrs(fields)...)
}

func (a adapter) Fatal(msg string, fields map[string]interface{}) { a.l.Error(msg, attrs(fields)...) }

// Level and OutputPath are the client's own knobs; the slog handler decides.
func (a adapter) Level(string)                  {}
func (a adapter) OutputPath(string) (err error) { return nil }
