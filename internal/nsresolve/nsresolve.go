// Package nsresolve turns the NameServer addresses of our configuration
// (host:port, where host is a name such as namesrv-1 or a literal IP) into
// the literal ip:port list rocketmq-client-go v2.1.2 accepts.
//
// The client checks every NameServer address when a producer or consumer
// is built (internal/namesrv.go NewNamesrv → primitive/base.go verifyIP)
// and refuses anything but a literal IPv4 or IPv6 address ("IP addr
// error"). It asks its primitive.NsResolver once at construction and again
// 10 s after Start, then every 2 minutes (internal/client.go Start →
// UpdateNameServerAddress), keeping its current list when the resolver
// returns none. A Resolver looks each name up on every one of those calls,
// so a NameServer that moves to another address (a recreated container) is
// followed within 2 minutes.
package nsresolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Unresolved is what Resolve returns when no NameServer name resolves and
// none ever did: a literal address the client accepts and nothing listens
// on (connecting to port 0 is refused at once). The client can then be
// built, and behaves as with every NameServer down — sends fail and orderd
// spills them — until a later Resolve finds the real addresses.
const Unresolved = "127.0.0.1:0"

// DefaultTimeout bounds one Resolve (all names are looked up at once).
const DefaultTimeout = 2 * time.Second

// LookupFunc returns the IP addresses of host. net.DefaultResolver's
// LookupHost is the default; tests inject their own.
type LookupFunc func(ctx context.Context, host string) ([]string, error)

// Options tunes a Resolver.
type Options struct {
	// Lookup resolves a name; default net.DefaultResolver.LookupHost.
	Lookup LookupFunc
	// Timeout bounds one Resolve; default DefaultTimeout.
	Timeout time.Duration
}

// Resolver is a primitive.NsResolver over configured host:port addresses.
// It is safe for concurrent use; one Resolver may serve every client of a
// process.
type Resolver struct {
	addrs   []string
	lookup  LookupFunc
	timeout time.Duration
	logger  *slog.Logger

	mu     sync.Mutex
	last   []string          // the last non-empty answer
	failed map[string]string // address → why it did not resolve, as last logged
}

var _ primitive.NsResolver = (*Resolver)(nil)

// New returns a Resolver for addrs (host:port each, as configured). It
// fails when addrs is empty or an entry is not host:port.
func New(addrs []string, logger *slog.Logger, opts Options) (*Resolver, error) {
	if len(addrs) == 0 {
		return nil, errors.New("nsresolve: no NameServer address")
	}
	if logger == nil {
		return nil, errors.New("nsresolve: logger is required")
	}
	for _, a := range addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("nsresolve: %q is not host:port", a)
		}
	}
	if opts.Lookup == nil {
		opts.Lookup = net.DefaultResolver.LookupHost
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Resolver{addrs: slices.Clone(addrs), lookup: opts.Lookup, timeout: opts.Timeout,
		logger: logger.With("component", "nsresolve"), failed: map[string]string{}}, nil
}

// Addrs returns the addresses as configured.
func (r *Resolver) Addrs() []string { return slices.Clone(r.addrs) }

// Description implements primitive.NsResolver; the client puts it in the
// error it returns when Resolve gives nothing.
func (r *Resolver) Description() string {
	return "DNS resolver of " + strings.Join(r.addrs, ",")
}

// Resolve implements primitive.NsResolver: the ip:port of every configured
// address that resolves now. When none does, it returns the last answer
// that had some (the client would keep its list anyway), or Unresolved
// before the first. Each name that stops or starts resolving is logged
// once.
func (r *Resolver) Resolve() []string {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	got, failures := r.resolve(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logChanges(failures)
	if len(got) > 0 {
		r.last = got
		return slices.Clone(got)
	}
	if len(r.last) > 0 {
		return slices.Clone(r.last)
	}
	return []string{Unresolved}
}

// Lookup resolves every configured address now, within ctx and the
// Resolver's timeout. It returns the ip:port addresses of those that
// resolve and an error naming each one that does not (nil when all do).
func (r *Resolver) Lookup(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	got, failures := r.resolve(ctx)
	return got, joinFailures(failures)
}

// DialAny resolves the addresses and returns nil as soon as one NameServer
// accepts a TCP connection, or an error naming, for each configured
// address, why it could not be reached: the name does not resolve, or the
// connection to its IP failed. Readiness probes use it.
func (r *Resolver) DialAny(ctx context.Context) error {
	var errs []error
	for _, t := range r.Targets(ctx) {
		if t.Err != nil {
			errs = append(errs, t.Err)
			continue
		}
		for _, ip := range t.IPs {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", ip)
			if err == nil {
				return c.Close()
			}
			errs = append(errs, t.Wrap(ip, err))
		}
	}
	return errors.Join(errs...)
}

// Target is one configured address and what it resolves to now.
type Target struct {
	// Addr is the address as configured (host:port).
	Addr string
	// IPs are its ip:port addresses (Addr itself for a literal).
	IPs []string
	// Err says why it did not resolve (it names Addr); IPs is then empty.
	Err error
}

// Wrap names the target in err, a failure to reach its address ip, unless
// ip is Addr itself (a literal: the error names it already).
func (t Target) Wrap(ip string, err error) error {
	if ip == t.Addr {
		return err
	}
	return fmt.Errorf("name server %s (%s): %w", t.Addr, ip, err)
}

// Targets resolves each configured address now, in configuration order,
// within ctx and the Resolver's timeout.
func (r *Resolver) Targets(ctx context.Context) []Target {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	out := make([]Target, len(r.addrs))
	var wg sync.WaitGroup
	for i, a := range r.addrs {
		out[i].Addr = a
		host, port, _ := net.SplitHostPort(a) // checked by New
		if net.ParseIP(host) != nil {
			out[i].IPs = []string{a} // a literal: unchanged
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ips, err := r.lookup(ctx, host)
			if err == nil {
				ips = preferIPv4(ips)
				if len(ips) == 0 {
					err = errors.New("no address")
				}
			}
			if err != nil {
				out[i].Err = fmt.Errorf("name server %s does not resolve: %w", a, err)
				return
			}
			for _, ip := range ips {
				out[i].IPs = append(out[i].IPs, net.JoinHostPort(ip, port))
			}
		}()
	}
	wg.Wait()
	return out
}

func (r *Resolver) resolve(ctx context.Context) ([]string, map[string]error) {
	var got []string
	failures := map[string]error{}
	for _, t := range r.Targets(ctx) {
		if t.Err != nil {
			failures[t.Addr] = t.Err
			continue
		}
		for _, ip := range t.IPs {
			if !slices.Contains(got, ip) {
				got = append(got, ip)
			}
		}
	}
	return got, failures
}

// preferIPv4 keeps the IPv4 addresses when there are any, as the Java
// client does by default (java.net.preferIPv6Addresses=false): a name with
// both families (localhost on many hosts) would otherwise send every other
// request to an IPv6 address the NameServer may not listen on. Sorted, so
// that the same answer in another order is the same list.
func preferIPv4(ips []string) []string {
	var v4, v6 []string
	for _, s := range ips {
		ip := net.ParseIP(s)
		switch {
		case ip == nil:
		case ip.To4() != nil:
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, s)
		}
	}
	if len(v4) > 0 {
		slices.Sort(v4)
		return slices.Compact(v4)
	}
	slices.Sort(v6)
	return slices.Compact(v6)
}

// logChanges logs each address that stopped resolving (with why) and each
// that resolves again. r.mu is held.
func (r *Resolver) logChanges(failures map[string]error) {
	for a, err := range failures {
		if _, known := r.failed[a]; !known {
			r.logger.Warn("rocketmq name server does not resolve; it is left out until it does",
				"name_server", a, "error", err)
		}
		r.failed[a] = err.Error()
	}
	for a := range r.failed {
		if _, still := failures[a]; !still {
			r.logger.Info("rocketmq name server resolves now", "name_server", a)
			delete(r.failed, a)
		}
	}
}

func joinFailures(failures map[string]error) error {
	if len(failures) == 0 {
		return nil
	}
	keys := make([]string, 0, len(failures))
	for a := range failures {
		keys = append(keys, a)
	}
	slices.Sort(keys)
	errs := make([]error, 0, len(keys))
	for _, a := range keys {
		errs = append(errs, failures[a])
	}
	return errors.Join(errs...)
}
