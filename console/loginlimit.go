package console

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// LoginLimit bounds failed logins per client address: Burst at once, then
// one more every Every. A login from an address whose bucket is empty is
// refused (429 with Retry-After) before its key is looked at, so a
// guesser learns nothing more from trying faster. A successful login
// gives its token back.
type LoginLimit struct {
	Burst int
	Every time.Duration
	// TrustedProxies are the load balancers in front of orderd: a request
	// from one of them is counted against the last address of its
	// X-Forwarded-For that is not itself a trusted proxy. From any other
	// peer the header is ignored (a client could write anything in it).
	TrustedProxies []netip.Prefix
	// MaxAddresses bounds the addresses tracked at once. Default 10,000.
	// Beyond it, and after forgetting the full buckets, new addresses share
	// one bucket: a flood from many addresses slows every newcomer's
	// logins, never the memory.
	MaxAddresses int
}

// loginLimiter holds one token bucket per client address.
type loginLimiter struct {
	cfg LoginLimit
	now func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*rate.Limiter
	overflow  *rate.Limiter
	lastSweep time.Time
}

func newLoginLimiter(cfg LoginLimit, now func() time.Time) *loginLimiter {
	if cfg.Burst <= 0 {
		cfg.Burst = 10
	}
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Second
	}
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = 10_000
	}
	return &loginLimiter{cfg: cfg, now: now, buckets: map[netip.Addr]*rate.Limiter{},
		overflow: rate.NewLimiter(rate.Every(cfg.Every), cfg.Burst)}
}

// loginAttempt is one login's token, taken before the key is checked.
type loginAttempt struct {
	r  *rate.Reservation
	at time.Time
}

// succeeded gives the token back: only failed logins count. It cancels
// as of the reservation's own instant: a Reservation ignores a cancel
// dated after the time it was due.
func (a loginAttempt) succeeded() { a.r.CancelAt(a.at) }

// take takes a token of addr's bucket. With none left it returns ok false
// and how long until the next one.
func (l *loginLimiter) take(addr netip.Addr) (loginAttempt, time.Duration, bool) {
	now := l.now()
	b := l.bucket(bucketKey(addr), now)
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now) // a refused attempt must not push the next one further
		return loginAttempt{}, d, false
	}
	return loginAttempt{r: r, at: now}, 0, true
}

// bucketKey is the address a bucket belongs to: an IPv6 address's /64,
// since one client commonly holds a whole /64 and could otherwise fill the
// table with a failed login per address and push everyone into the shared
// overflow bucket.
func bucketKey(addr netip.Addr) netip.Addr {
	if addr.Is6() && !addr.Is4In6() {
		if p, err := addr.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return addr
}

func (l *loginLimiter) bucket(addr netip.Addr, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[addr]; ok {
		return b
	}
	if len(l.buckets) >= l.cfg.MaxAddresses && now.Sub(l.lastSweep) >= l.cfg.Every {
		// A full bucket behaves like a new one: forget it.
		l.lastSweep = now
		for a, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.cfg.Burst) {
				delete(l.buckets, a)
			}
		}
	}
	if len(l.buckets) >= l.cfg.MaxAddresses {
		return l.overflow
	}
	b := rate.NewLimiter(rate.Every(l.cfg.Every), l.cfg.Burst)
	l.buckets[addr] = b
	return b
}

// clientAddr is the address a request is counted against: its peer's, or,
// when the peer is a trusted proxy, the last X-Forwarded-For entry no
// trusted proxy wrote.
func (l *loginLimiter) clientAddr(req *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{} // the zero address: one shared bucket
	}
	addr = addr.Unmap()
	if !l.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(req.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a hop we cannot read: count the proxy itself
		}
		hop = hop.Unmap()
		if !l.trusted(hop) {
			return hop
		}
		addr = hop
	}
	return addr
}

func (l *loginLimiter) trusted(a netip.Addr) bool {
	for _, p := range l.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseProxies reads CIDRs or single addresses (console.logins.trusted_proxies).
func ParseProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
