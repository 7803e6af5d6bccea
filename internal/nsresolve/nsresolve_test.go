package nsresolve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/txorder/txorder/internal/testenv"
)

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil))
}

// hosts is a switchable name table for the Lookup hook.
type hosts struct {
	mu    sync.Mutex
	table map[string][]string
	calls int
}

func (h *hosts) set(name string, ips ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.table == nil {
		h.table = map[string][]string{}
	}
	if len(ips) == 0 {
		delete(h.table, name)
		return
	}
	h.table[name] = ips
}

func (h *hosts) lookup(_ context.Context, host string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if ips, ok := h.table[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestLiteralAddressesUnchanged(t *testing.T) {
	h := &hosts{}
	r, err := New([]string{"10.0.0.1:9876", "[fd00::2]:9876"}, logger(t), Options{Lookup: h.lookup})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Resolve(), []string{"10.0.0.1:9876", "[fd00::2]:9876"}; !slices.Equal(got, want) {
		t.Errorf("Resolve() = %v, want %v", got, want)
	}
	if h.calls != 0 {
		t.Errorf("literal addresses were looked up %d times", h.calls)
	}
}

// TestNamesResolveToWhatTheClientAccepts: every answer passes the client's
// own check (primitive.NamesrvAddr.Check, the verifyIP behind "IP addr
// error"), IPv4 is preferred, and each call looks the names up again.
func TestNamesResolveToWhatTheClientAccepts(t *testing.T) {
	h := &hosts{}
	h.set("namesrv-1", "::1", "172.18.0.3")
	h.set("namesrv-2", "fd00::5")
	r, err := New([]string{"namesrv-1:9876", "namesrv-2:9877", "10.0.0.9:9876"}, logger(t), Options{Lookup: h.lookup})
	if err != nil {
		t.Fatal(err)
	}
	if err := primitive.NamesrvAddr([]string{"namesrv-1:9876"}).Check(); err == nil {
		t.Fatal("the client accepts a host name; the defect this package works around is gone")
	}
	got := r.Resolve()
	want := []string{"172.18.0.3:9876", "[fd00::5]:9877", "10.0.0.9:9876"}
	if !slices.Equal(got, want) {
		t.Fatalf("Resolve() = %v, want %v", got, want)
	}
	if err := primitive.NamesrvAddr(got).Check(); err != nil {
		t.Errorf("the client refuses %v: %v", got, err)
	}
	// The NameServer container is recreated with another address.
	h.set("namesrv-1", "172.18.0.7")
	if got := r.Resolve(); got[0] != "172.18.0.7:9876" {
		t.Errorf("after the move Resolve() = %v, want 172.18.0.7:9876 first", got)
	}
}

func TestUnresolvableThenResolvable(t *testing.T) {
	h := &hosts{}
	r, err := New([]string{"namesrv-1:9876", "namesrv-2:9876"}, logger(t), Options{Lookup: h.lookup})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Resolve(); !slices.Equal(got, []string{Unresolved}) {
		t.Fatalf("nothing resolves: Resolve() = %v, want [%s]", got, Unresolved)
	}
	if err := primitive.NamesrvAddr([]string{Unresolved}).Check(); err != nil {
		t.Fatalf("the client refuses the placeholder %s: %v", Unresolved, err)
	}
	_, err = r.Lookup(context.Background())
	for _, name := range []string{"namesrv-1:9876", "namesrv-2:9876"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Lookup error %v does not name %s", err, name)
		}
	}

	h.set("namesrv-2", "172.18.0.4")
	if got := r.Resolve(); !slices.Equal(got, []string{"172.18.0.4:9876"}) {
		t.Fatalf("one resolves: Resolve() = %v", got)
	}
	addrs, err := r.Lookup(context.Background())
	if !slices.Equal(addrs, []string{"172.18.0.4:9876"}) || err == nil || !strings.Contains(err.Error(), "namesrv-1:9876") ||
		strings.Contains(err.Error(), "namesrv-2") {
		t.Errorf("Lookup = %v, %v; want namesrv-2's address and an error naming only namesrv-1", addrs, err)
	}

	// Both gone again (say, the containers are stopped): the last answer
	// stands, as the client would keep it anyway.
	h.set("namesrv-2")
	if got := r.Resolve(); !slices.Equal(got, []string{"172.18.0.4:9876"}) {
		t.Errorf("none resolves after one did: Resolve() = %v, want the last answer", got)
	}
}

func TestResolveIsBounded(t *testing.T) {
	hang := func(ctx context.Context, host string) ([]string, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	r, err := New([]string{"namesrv-1:9876"}, logger(t), Options{Lookup: hang, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []string, 1)
	go func() { done <- r.Resolve() }()
	select {
	case got := <-done:
		if !slices.Equal(got, []string{Unresolved}) {
			t.Errorf("Resolve() = %v, want [%s]", got, Unresolved)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Resolve did not return with a lookup that hangs")
	}
}

// TestUnresolvedIsRefusedAtOnce: the placeholder fails a real dial
// immediately, so a client built on it fails fast like one whose
// NameServers are down.
func TestUnresolvedIsRefusedAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", Unresolved)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection", Unresolved)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", Unresolved, err)
	}
}

func TestDialAny(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	h := &hosts{}
	r, err := New([]string{"namesrv-1:" + port}, logger(t), Options{Lookup: h.lookup})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.DialAny(ctx); err == nil || !strings.Contains(err.Error(), "namesrv-1:"+port+" does not resolve") {
		t.Errorf("unresolvable: DialAny = %v, want an error naming namesrv-1:%s", err, port)
	}
	h.set("namesrv-1", "127.0.0.1")
	if err := r.DialAny(ctx); err != nil {
		t.Errorf("resolvable: DialAny = %v", err)
	}
	ln.Close()
	if err := r.DialAny(ctx); err == nil || !strings.Contains(err.Error(), "namesrv-1:"+port+" (127.0.0.1:"+port+")") {
		t.Errorf("nothing listening: DialAny = %v, want an error naming the name and its address", err)
	}
}

// TestSystemResolverLocalhost uses the real resolver (no hook): localhost
// resolves through /etc/hosts to a loopback address.
func TestSystemResolverLocalhost(t *testing.T) {
	r, err := New([]string{"localhost:9876"}, logger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Resolve()
	if len(got) == 0 || got[0] == Unresolved {
		t.Fatalf("localhost did not resolve: %v", got)
	}
	host, _, _ := net.SplitHostPort(got[0])
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("localhost resolved to %v", got)
	}
}

// TestClientBuildsWithNames: the unmodified client refuses a NameServer
// name given as is, and accepts the same name through a Resolver.
func TestClientBuildsWithNames(t *testing.T) {
	_, err := rocketmq.NewProducer(producer.WithNsResolver(primitive.NewPassthroughResolver([]string{"localhost:9876"})),
		producer.WithGroupName("nsresolve-test"), producer.WithInstanceName("nsresolve-test-passthrough"))
	if err == nil || !strings.Contains(err.Error(), "IP addr error") {
		t.Fatalf("passthrough resolver with a name: %v, want the client's IP addr error", err)
	}
	r, err := New([]string{"localhost:9876"}, logger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rocketmq.NewProducer(producer.WithNsResolver(r),
		producer.WithGroupName("nsresolve-test"), producer.WithInstanceName("nsresolve-test-resolver"))
	if err != nil {
		t.Fatalf("with a Resolver: %v", err)
	}
	_ = p.Shutdown()
}

func TestNewRejects(t *testing.T) {
	for _, addrs := range [][]string{nil, {"namesrv-1"}, {":9876"}, {"namesrv-1:9876;namesrv-2:9876"}} {
		if _, err := New(addrs, slog.New(slog.DiscardHandler), Options{}); err == nil {
			t.Errorf("New(%q) accepted", addrs)
		}
	}
}
