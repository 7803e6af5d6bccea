package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// Sessions are HMAC-signed, expiring cookies, not server-side state: the
// console must work exactly when MySQL or Redis is down, and any orderd
// replica behind a load balancer must accept a session another one issued
// (they share Config.SessionSecret). A cookie names the admin client, a
// fingerprint of the admin key it was opened with (removing or rotating
// that key ends the session at once), a random session id and its expiry.
//
// Logout ends a session for real: its id is revoked in Redis (shared by the
// replicas, kept until the session would have expired) and in this
// process. If Redis cannot be asked whether a session was revoked, pages
// are still served (an operator needs the console during a Redis outage)
// but every state change is refused.

const (
	sessionCookie = "txo_console"
	loginCookie   = "txo_console_login"
	cookiePath    = "/console"
)

// session is the content of a session cookie.
type session struct {
	ID      string `json:"sid"`
	Admin   string `json:"adm"`
	KeyHash string `json:"kfp"`
	Expires int64  `json:"exp"`
}

// Revocations remembers logged-out sessions until they expire. Both
// methods return an error when the store cannot be reached.
type Revocations interface {
	Revoke(ctx context.Context, sessionID string, until time.Time) error
	Revoked(ctx context.Context, sessionID string) (bool, error)
}

// sessions signs, verifies and revokes session cookies.
type sessions struct {
	key    []byte
	ttl    time.Duration
	admins map[string]string // key fingerprint → admin name
	keys   map[[32]byte]string
	shared Revocations // may be nil
	now    func() time.Time

	mu    sync.Mutex
	local map[string]time.Time // revoked here: id → expiry
}

func newSessions(secret []byte, ttl time.Duration, adminKeys map[string]string, shared Revocations, now func() time.Time) *sessions {
	s := &sessions{key: secret, ttl: ttl, admins: map[string]string{}, keys: map[[32]byte]string{},
		shared: shared, now: now, local: map[string]time.Time{}}
	for key, name := range adminKeys {
		s.keys[sha256.Sum256([]byte(key))] = name
		s.admins[fingerprint(key)] = name
	}
	return s
}

// fingerprint names an admin key without revealing it.
func fingerprint(key string) string {
	sum := sha256.Sum256([]byte("txorder console key\x00" + key))
	return hex.EncodeToString(sum[:8])
}

// login checks an admin key in constant time (against every configured
// key) and returns the admin's name and the key's fingerprint.
func (s *sessions) login(key string) (name, keyHash string, ok bool) {
	given := sha256.Sum256([]byte(key))
	for sum, n := range s.keys {
		if subtle.ConstantTimeCompare(given[:], sum[:]) == 1 {
			name, ok = n, true
		}
	}
	if !ok {
		return "", "", false
	}
	return name, fingerprint(key), true
}

// issue returns a new session for admin and its cookie value.
func (s *sessions) issue(admin, keyHash string) (session, string) {
	sess := session{ID: randomToken(18), Admin: admin, KeyHash: keyHash, Expires: s.now().Add(s.ttl).Unix()}
	body, _ := json.Marshal(sess)
	payload := base64.RawURLEncoding.EncodeToString(body)
	return sess, payload + "." + s.sign("session", payload)
}

var (
	errNoSession = errors.New("no session")
	errRevoked   = errors.New("session logged out")
)

// verify returns the session of a cookie value: signed by us, unexpired,
// its admin key still configured, not revoked. revocationUnknown is set
// when the shared store could not be asked (the session is returned).
func (s *sessions) verify(ctx context.Context, value string) (sess session, revocationUnknown bool, err error) {
	payload, sig, ok := strings.Cut(value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign("session", payload))) {
		return session{}, false, errNoSession
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(body, &sess) != nil || sess.ID == "" {
		return session{}, false, errNoSession
	}
	if s.now().Unix() >= sess.Expires {
		return session{}, false, errNoSession
	}
	if name, ok := s.admins[sess.KeyHash]; !ok || name != sess.Admin {
		return session{}, false, errNoSession // the key was removed or rotated
	}
	s.mu.Lock()
	_, gone := s.local[sess.ID]
	s.mu.Unlock()
	if gone {
		return session{}, false, errRevoked
	}
	if s.shared != nil {
		revoked, err := s.shared.Revoked(ctx, sess.ID)
		if err != nil {
			return sess, true, nil
		}
		if revoked {
			return session{}, false, errRevoked
		}
	}
	return sess, false, nil
}

// revoke ends sess here and, if it can, on every replica.
func (s *sessions) revoke(ctx context.Context, sess session) error {
	until := time.Unix(sess.Expires, 0)
	s.mu.Lock()
	now := s.now()
	for id, exp := range s.local { // forget what expired anyway
		if !exp.After(now) {
			delete(s.local, id)
		}
	}
	s.local[sess.ID] = until
	s.mu.Unlock()
	if s.shared == nil {
		return nil
	}
	return s.shared.Revoke(ctx, sess.ID, until)
}

// csrfToken is the token every state-changing form of sess carries. It is
// derived from the session, so every replica can check it without state.
func (s *sessions) csrfToken(sess session) string {
	return s.sign("csrf", sess.ID)
}

func (s *sessions) checkCSRF(sess session, token string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(s.csrfToken(sess)))
}

func (s *sessions) sign(purpose, data string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
