package console

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLoginLimiterCountsFailuresOnly(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLoginLimiter(LoginLimit{Burst: 3, Every: 10 * time.Second}, clk.now)
	addr := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")

	// Successful logins give their token back: any number of them, even
	// when the key check took a while.
	for i := range 10 {
		a, _, ok := l.take(addr)
		if !ok {
			t.Fatalf("successful login %d refused", i)
		}
		clk.advance(time.Millisecond)
		a.succeeded()
	}
	for i := range 3 {
		if _, _, ok := l.take(addr); !ok {
			t.Fatalf("failed login %d of the burst refused", i)
		}
	}
	_, wait, ok := l.take(addr)
	if ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("4th failure: ok %v, wait %s; want refused with a wait up to 10s", ok, wait)
	}
	// Refused attempts do not push the next token further.
	for range 5 {
		if _, w, _ := l.take(addr); w != wait {
			t.Fatalf("wait grew from %s to %s with refused attempts", wait, w)
		}
	}
	if _, _, ok := l.take(other); !ok {
		t.Fatal("another address was refused")
	}
	clk.advance(wait)
	if _, _, ok := l.take(addr); !ok {
		t.Fatalf("refused after waiting the %s it was told", wait)
	}
	if _, _, ok := l.take(addr); ok {
		t.Fatal("one token came back, two were taken")
	}
}

func TestLoginLimiterBoundsAddresses(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLoginLimiter(LoginLimit{Burst: 2, Every: time.Minute, MaxAddresses: 4}, clk.now)
	for i := range 4 {
		l.take(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	// Full map, no full bucket to forget: newcomers share one bucket.
	a, b := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2")
	l.take(a)
	l.take(b)
	if _, _, ok := l.take(a); ok {
		t.Fatal("the overflow bucket (burst 2) gave a third token")
	}
	if len(l.buckets) != 4 {
		t.Fatalf("%d addresses tracked, bound 4", len(l.buckets))
	}
	// Once their buckets are full again, the old addresses are forgotten.
	clk.advance(2 * time.Minute)
	if _, _, ok := l.take(a); !ok {
		t.Fatal("a newcomer refused after the old buckets refilled")
	}
	if len(l.buckets) != 1 {
		t.Fatalf("%d addresses tracked after the sweep, want the newcomer only", len(l.buckets))
	}
}

func TestLoginClientAddr(t *testing.T) {
	proxies, err := ParseProxies([]string{"10.0.0.0/8", "192.168.1.7"})
	if err != nil {
		t.Fatal(err)
	}
	l := newLoginLimiter(LoginLimit{TrustedProxies: proxies}, time.Now)
	cases := []struct {
		remote, xff, want string
	}{
		{"203.0.113.9:5000", "", "203.0.113.9"},
		// Not from a trusted proxy: the header is the client's own words.
		{"203.0.113.9:5000", "198.51.100.1", "203.0.113.9"},
		{"10.1.2.3:5000", "198.51.100.1", "198.51.100.1"},
		// A client's own X-Forwarded-For is left of what the proxies added.
		{"10.1.2.3:5000", "1.1.1.1, 198.51.100.1, 192.168.1.7", "198.51.100.1"},
		{"10.1.2.3:5000", "", "10.1.2.3"},
		{"10.1.2.3:5000", "garbage", "10.1.2.3"},
		{"[::ffff:10.1.2.3]:5000", "198.51.100.1", "198.51.100.1"},
		{"[2001:db8::1]:5000", "198.51.100.1", "2001:db8::1"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodPost, "/console/login", nil)
		req.RemoteAddr = tc.remote
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := l.clientAddr(req).String(); got != tc.want {
			t.Errorf("remote %s, X-Forwarded-For %q: counted against %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := ParseProxies([]string{"lb.internal"}); err == nil {
		t.Error("a host name was taken as a trusted proxy")
	}
}

// An IPv6 client commonly holds a whole /64: its addresses share one
// bucket, so it cannot fill the table with one address per failed login.
func TestLoginLimiterIPv6By64(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := newLoginLimiter(LoginLimit{Burst: 3, Every: time.Hour}, clk.now)
	for i := range 3 {
		if _, _, ok := l.take(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))); !ok {
			t.Fatalf("failure %d of the /64's burst refused", i)
		}
	}
	if _, _, ok := l.take(netip.MustParseAddr("2001:db8:1:2:ffff::9")); ok {
		t.Fatal("a fourth address of the same /64 got a token of its own")
	}
	if _, _, ok := l.take(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 was refused")
	}
	if _, _, ok := l.take(netip.MustParseAddr("192.0.2.7")); !ok {
		t.Fatal("an IPv4 client was refused")
	}
}
