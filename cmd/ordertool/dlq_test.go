package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestDLQListAndReplay(t *testing.T) {
	a := newAuditDB(t)
	id := uuid.Must(uuid.NewV7()).String()
	body := `{"order_id":"` + id + `","customer_id":"c","currency":"EUR","total":100,"items":[{"sku":"S","name":"W","quantity":1,"unit_price":100}],"placed_at":"2026-01-01T00:00:00Z"}`
	now := time.Now().UTC()
	a.exec(`INSERT INTO dead_letters (consumer_group, original_msg_id, msg_key, body, reconsume_times, reason, first_seen_at, last_seen_at)
		VALUES ('fulfillment', 'M1', ?, ?, 17, 'broker gave up after 17 failed deliveries', ?, ?),
		       ('fulfillment', 'M2', 'junk', ?, 0, 'malformed ORDER_PAID: decode', ?, ?)`,
		id, body, now, now, []byte{0xff, 0x00}, now, now)
	flags := []string{"--config", ""}

	code, out, errOut := runTool(t, a.env, append([]string{"dlq", "list"}, flags...)...)
	if code != 0 || !strings.Contains(out, "M1") || !strings.Contains(out, "malformed ORDER_PAID") || !strings.Contains(out, "REASON") {
		t.Fatalf("dlq list = %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runTool(t, a.env, append([]string{"dlq", "list", "--json"}, flags...)...)
	var list []struct {
		ID         int64
		Key        string
		Body       *string
		BodyBase64 []byte `json:"body_base64"`
		ReplayedAt *time.Time
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 2 {
		t.Fatalf("dlq list --json = %d %v\n%s", code, err, out)
	}
	if list[0].Body == nil || *list[0].Body != body || list[1].Body != nil || len(list[1].BodyBase64) != 2 {
		t.Fatalf("bodies = %+v", list)
	}

	// --all replays what can be replayed and reports the malformed one.
	code, out, errOut = runTool(t, a.env, append([]string{"dlq", "replay", "--all"}, flags...)...)
	if code != 1 || !strings.Contains(out, "applied") || !strings.Contains(out, "cannot be replayed") || !strings.Contains(errOut, "1 of 2") {
		t.Fatalf("dlq replay --all = %d\n%s%s", code, out, errOut)
	}
	var shipments int
	_ = a.db.QueryRow(`SELECT COUNT(*) FROM shipments WHERE order_id = ?`, id).Scan(&shipments)
	if shipments != 1 {
		t.Fatalf("shipments = %d, want 1", shipments)
	}
	code, out, _ = runTool(t, a.env, append([]string{"dlq", "list", "--pending"}, flags...)...)
	if code != 0 || strings.Contains(out, "M1") || !strings.Contains(out, "M2") {
		t.Fatalf("pending after replay = %d\n%s", code, out)
	}
	code, out, _ = runTool(t, a.env, append([]string{"dlq", "replay", "1"}, flags...)...)
	if code != 0 || !strings.Contains(out, "already applied") {
		t.Fatalf("second replay = %d\n%s", code, out)
	}
	_ = a.db.QueryRow(`SELECT COUNT(*) FROM shipments WHERE order_id = ?`, id).Scan(&shipments)
	if shipments != 1 {
		t.Fatalf("shipments after a second replay = %d, want 1", shipments)
	}
}

func TestDLQUsage(t *testing.T) {
	cases := []struct {
		args     []string
		wantCode int
		wantText string
	}{
		{[]string{"dlq"}, 2, "list|replay"},
		{[]string{"dlq", "--help"}, 0, "%DLQ%fulfillment"},
		{[]string{"dlq", "nope"}, 2, `unknown subcommand "nope"`},
		{[]string{"dlq", "replay"}, 2, "ids or --all"},
		{[]string{"dlq", "replay", "--all", "3"}, 2, "ids or --all"},
		{[]string{"dlq", "replay", "x1"}, 2, "not a dead letter id"},
		{[]string{"dlq", "list", "extra"}, 2, "unexpected argument"},
		{[]string{"audit", "--settle", "-1s"}, 2, "must not be negative"},
		{[]string{"audit", "extra"}, 2, "unexpected argument"},
	}
	for _, tc := range cases {
		code, out, errOut := runTool(t, nil, tc.args...)
		if code != tc.wantCode || !strings.Contains(out+errOut, tc.wantText) {
			t.Errorf("%v = %d %q %q, want %d and %q", tc.args, code, out, errOut, tc.wantCode, tc.wantText)
		}
	}
}
