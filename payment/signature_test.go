package payment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testSecret = "whsec-test-0123456789abcdef0123456789"

var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func hexMAC(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestParseSignature(t *testing.T) {
	mac := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	cases := []struct {
		name   string
		header string
		wantTS int64
		wantN  int // number of v1 entries; 0 = want an error
	}{
		{"one v1", "t=1700000000,v1=" + mac, 1700000000, 1},
		{"v1 first", "v1=" + mac + ",t=1700000000", 1700000000, 1},
		{"two v1 (rotation)", "t=1700000000,v1=" + mac + ",v1=" + other, 1700000000, 2},
		{"spaces after commas", "t=1700000000, v1=" + mac, 1700000000, 1},
		{"unknown scheme ignored", "t=1700000000,v0=whatever,v1=" + mac, 1700000000, 1},
		{"upper-case hex", "t=1700000000,v1=" + strings.ToUpper(mac), 1700000000, 1},
		{"t zero", "t=0,v1=" + mac, 0, 1},
		{"eight v1", "t=1" + strings.Repeat(",v1="+mac, 8), 1, 8},

		{"empty", "", 0, 0},
		{"no t", "v1=" + mac, 0, 0},
		{"no v1", "t=1700000000", 0, 0},
		{"only unknown scheme", "t=1700000000,v0=" + mac, 0, 0},
		{"two t", "t=1,t=2,v1=" + mac, 0, 0},
		{"empty t", "t=,v1=" + mac, 0, 0},
		{"negative t", "t=-1,v1=" + mac, 0, 0},
		{"plus t", "t=+1,v1=" + mac, 0, 0},
		{"fractional t", "t=1.5,v1=" + mac, 0, 0},
		{"hex t", "t=0x10,v1=" + mac, 0, 0},
		{"13-digit t", "t=1700000000000,v1=" + mac, 0, 0},
		{"t overflow", "t=99999999999999999999,v1=" + mac, 0, 0},
		{"bad hex", "t=1,v1=" + strings.Repeat("zz", 32), 0, 0},
		{"short mac", "t=1,v1=" + mac[:62], 0, 0},
		{"long mac", "t=1,v1=" + mac + "ab", 0, 0},
		{"empty v1", "t=1,v1=", 0, 0},
		{"no equals", "t=1,v1", 0, 0},
		{"empty key", "t=1,=x,v1=" + mac, 0, 0},
		{"trailing comma", "t=1,v1=" + mac + ",", 0, 0},
		{"empty entry", "t=1,,v1=" + mac, 0, 0},
		{"semicolons", "t=1;v1=" + mac, 0, 0},
		{"nine v1", "t=1" + strings.Repeat(",v1="+mac, 9), 0, 0},
		{"too long", "t=1,v1=" + mac + ",x=" + strings.Repeat("a", 1024), 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := ParseSignature(tc.header)
			if tc.wantN == 0 {
				if !errors.Is(err, ErrBadSignature) {
					t.Fatalf("got %+v, %v; want ErrBadSignature", sig, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want t=%d with %d v1", err, tc.wantTS, tc.wantN)
			}
			if sig.Timestamp != tc.wantTS || len(sig.V1) != tc.wantN || sig.TimestampText != strconv.FormatInt(tc.wantTS, 10) {
				t.Fatalf("got t=%d (%q) with %d v1, want t=%d with %d", sig.Timestamp, sig.TimestampText, len(sig.V1), tc.wantTS, tc.wantN)
			}
			for _, m := range sig.V1 {
				if len(m) != sha256.Size {
					t.Fatalf("decoded MAC of %d bytes", len(m))
				}
			}
		})
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"provider_txn_id":"tx-1","order_id":"0190b7a4-0000-7000-8000-000000000001","amount":2500,"currency":"EUR"}`)
	v, err := NewVerifier(testSecret, 5*time.Minute, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(testNow.Unix(), 10)
	good := hexMAC(testSecret, ts, body)
	at := func(d time.Duration) string { return Sign(testSecret, testNow.Add(d), body) }
	cases := []struct {
		name   string
		header string
		body   []byte
		ok     bool
		reason string // part of the error text, for the log
	}{
		{"signed now", Sign(testSecret, testNow, body), body, true, ""},
		{"4m59s old", at(-4*time.Minute - 59*time.Second), body, true, ""},
		{"exactly 5m old", at(-5 * time.Minute), body, true, ""},
		{"4m59s ahead", at(4*time.Minute + 59*time.Second), body, true, ""},
		{"rotation: old secret first", "t=" + ts + ",v1=" + hexMAC("old-secret-0123456789abcdef012345", ts, body) + ",v1=" + good, body, true, ""},
		{"rotation: new secret first", "t=" + ts + ",v1=" + good + ",v1=" + hexMAC("old-secret-0123456789abcdef012345", ts, body), body, true, ""},
		{"upper-case hex", "t=" + ts + ",v1=" + strings.ToUpper(good), body, true, ""},

		{"missing header", "", body, false, "missing"},
		{"5m01s old", at(-5*time.Minute - time.Second), body, false, "old"},
		{"an hour old", at(-time.Hour), body, false, "old"},
		{"5m01s ahead", at(5*time.Minute + time.Second), body, false, "future"},
		{"wrong secret", Sign("another-secret-0123456789abcdef0123", testNow, body), body, false, "no v1"},
		{"body changed", Sign(testSecret, testNow, body), append([]byte{' '}, body...), false, "no v1"},
		{"empty body signed, body sent", Sign(testSecret, testNow, nil), body, false, "no v1"},
		{"t changed", "t=" + strconv.FormatInt(testNow.Unix()+1, 10) + ",v1=" + good, body, false, "no v1"},
		{"leading zero t", "t=0" + ts + ",v1=" + good, body, false, "no v1"},
		{"MAC of another scheme", "t=" + ts + ",v0=" + good + ",v1=" + strings.Repeat("00", 32), body, false, "no v1"},
		{"bad hex", "t=" + ts + ",v1=" + strings.Repeat("g", 64), body, false, "hex"},
		{"malformed", "garbage", body, false, "key=value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(tc.header, tc.body)
			if tc.ok {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %v, want ErrBadSignature mentioning %q", err, tc.reason)
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), good) {
				t.Fatalf("error %q leaks the secret or the MAC", err)
			}
		})
	}
}

func TestNewVerifier(t *testing.T) {
	if _, err := NewVerifier("", time.Minute, nil); err == nil {
		t.Fatal("empty secret accepted")
	}
	if _, err := NewVerifier(testSecret, 0, nil); err == nil {
		t.Fatal("zero tolerance accepted")
	}
}

// FuzzVerify feeds arbitrary headers and bodies to the parser and the
// verifier. Neither may panic, and the verifier may accept only when some
// v1 entry really is the MAC of "<t>.<body>" under the secret, with t
// within the tolerance.
func FuzzVerify(f *testing.F) {
	body := []byte(`{"amount":1}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	good := hexMAC(testSecret, ts, body)
	for _, h := range []string{
		Sign(testSecret, now, body),
		"t=" + ts + ",v1=" + good + ",v1=" + good,
		"t=" + ts + ", v1=" + strings.ToUpper(good),
		"t=" + ts + ",v0=x,v1=" + good,
		"t=0" + ts + ",v1=" + good,
		"v1=" + good + ",t=" + ts,
		"t=" + ts + ",v1=" + good[:63],
		"t=,v1=", "t=1", "", ",,,", "t=1,t=1", "=", "t=9999999999999,v1=" + good,
	} {
		f.Add(h, body)
	}
	v, err := NewVerifier(testSecret, 5*time.Minute, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		sig, perr := ParseSignature(header)
		verr := v.Verify(header, body)
		if perr != nil {
			if !errors.Is(perr, ErrBadSignature) || verr == nil {
				t.Fatalf("parse error %v, verify %v", perr, verr)
			}
			return
		}
		if len(sig.V1) == 0 || len(sig.V1) > maxSignatureEntries {
			t.Fatalf("parsed %d v1 entries from %q", len(sig.V1), header)
		}
		if verr != nil {
			if !errors.Is(verr, ErrBadSignature) {
				t.Fatalf("verify error %v does not wrap ErrBadSignature", verr)
			}
			return
		}
		want := hexMAC(testSecret, sig.TimestampText, body)
		found := false
		for _, entry := range strings.Split(header, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(entry), "=")
			if k == "v1" && strings.EqualFold(val, want) {
				found = true
			}
		}
		if !found {
			t.Fatalf("accepted %q for body %q without a matching v1", header, body)
		}
		if d := now.Sub(time.Unix(sig.Timestamp, 0)); d > 5*time.Minute || d < -5*time.Minute {
			t.Fatalf("accepted a timestamp %s away", d)
		}
	})
}
