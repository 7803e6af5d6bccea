package payment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HeaderSignature names the header that carries the webhook signature:
//
//	X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex>…]
//
// The MAC is HMAC-SHA256(secret, "<t>.<raw body>"), t exactly as sent.
// Several v1 entries may be sent (a provider rotating its secret signs
// with both); one matching entry is enough. Entries with other keys are
// ignored, so that a provider may add schemes.
const HeaderSignature = "X-Signature"

// Bounds on the header, so that a hostile one costs little to reject.
const (
	maxSignatureHeaderLen = 1024
	maxSignatureEntries   = 8
	maxTimestampDigits    = 12 // unix seconds up to the year 33658
)

// Signature is a parsed X-Signature header.
type Signature struct {
	// Timestamp is t, in unix seconds.
	Timestamp int64
	// TimestampText is t exactly as sent: the MAC covers it.
	TimestampText string
	// V1 holds the decoded v1 MACs, each sha256.Size bytes.
	V1 [][]byte
}

// ParseSignature parses an X-Signature header. It checks the shape only:
// exactly one t of decimal digits, one to eight v1 entries of 64 hex
// digits, no empty entries. Errors wrap ErrBadSignature.
func ParseSignature(header string) (Signature, error) {
	var sig Signature
	if header == "" {
		return sig, fmt.Errorf("%w: missing %s header", ErrBadSignature, HeaderSignature)
	}
	if len(header) > maxSignatureHeaderLen {
		return sig, fmt.Errorf("%w: header longer than %d bytes", ErrBadSignature, maxSignatureHeaderLen)
	}
	seenT := false
	for i, e := range strings.Split(header, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok || key == "" {
			return sig, fmt.Errorf("%w: entry %d is not key=value", ErrBadSignature, i+1)
		}
		switch key {
		case "t":
			if seenT {
				return sig, fmt.Errorf("%w: more than one t", ErrBadSignature)
			}
			seenT = true
			if val == "" || len(val) > maxTimestampDigits || strings.Trim(val, "0123456789") != "" {
				return sig, fmt.Errorf("%w: t is not unix seconds", ErrBadSignature)
			}
			ts, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return sig, fmt.Errorf("%w: t: %w", ErrBadSignature, err)
			}
			sig.Timestamp, sig.TimestampText = ts, val
		case "v1":
			if len(sig.V1) == maxSignatureEntries {
				return sig, fmt.Errorf("%w: more than %d v1 entries", ErrBadSignature, maxSignatureEntries)
			}
			if len(val) != 2*sha256.Size {
				return sig, fmt.Errorf("%w: v1 is %d characters, want %d hex digits", ErrBadSignature, len(val), 2*sha256.Size)
			}
			mac, err := hex.DecodeString(val)
			if err != nil {
				return sig, fmt.Errorf("%w: v1 is not hex", ErrBadSignature)
			}
			sig.V1 = append(sig.V1, mac)
		}
	}
	if !seenT {
		return sig, fmt.Errorf("%w: no t", ErrBadSignature)
	}
	if len(sig.V1) == 0 {
		return sig, fmt.Errorf("%w: no v1", ErrBadSignature)
	}
	return sig, nil
}

// Sign returns the X-Signature header value for body sent at t, signed
// with secret. The payment provider does this; ordertool pay and tests
// play the provider.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(computeMAC([]byte(secret), ts, body))
}

func computeMAC(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verifier checks X-Signature headers against one secret. It is safe for
// concurrent use.
type Verifier struct {
	secret    []byte
	tolerance time.Duration
	now       func() time.Time
}

// NewVerifier returns a Verifier that accepts signatures made with secret
// whose timestamp is within ±tolerance of now(). now nil means time.Now.
func NewVerifier(secret string, tolerance time.Duration, now func() time.Time) (*Verifier, error) {
	if secret == "" {
		return nil, errors.New("payment verifier: empty webhook secret")
	}
	if tolerance <= 0 {
		return nil, errors.New("payment verifier: tolerance must be positive")
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{secret: []byte(secret), tolerance: tolerance, now: now}, nil
}

// Verify checks that header signs body. Every failure — missing or
// malformed header, no matching MAC, timestamp too old or in the future —
// is ErrBadSignature, wrapped with the reason for the log. The reason
// never contains the secret or a MAC.
func (v *Verifier) Verify(header string, body []byte) error {
	sig, err := ParseSignature(header)
	if err != nil {
		return err
	}
	want := computeMAC(v.secret, sig.TimestampText, body)
	// Compare every entry, not stopping at a match: the time taken does
	// not depend on which entry matched.
	match := false
	for _, mac := range sig.V1 {
		if hmac.Equal(mac, want) {
			match = true
		}
	}
	if !match {
		return fmt.Errorf("%w: no v1 entry matches the body", ErrBadSignature)
	}
	skew := v.now().Sub(time.Unix(sig.Timestamp, 0))
	switch {
	case skew > v.tolerance:
		return fmt.Errorf("%w: timestamp %s old, tolerance %s", ErrBadSignature, skew.Truncate(time.Second), v.tolerance)
	case skew < -v.tolerance:
		return fmt.Errorf("%w: timestamp %s in the future, tolerance %s", ErrBadSignature, (-skew).Truncate(time.Second), v.tolerance)
	}
	return nil
}
