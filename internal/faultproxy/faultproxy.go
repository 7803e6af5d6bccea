// Package faultproxy puts a TCP fault proxy between a client and one
// dependency (MySQL, Redis, a NameServer, a broker) inside a test process:
// Shopify's toxiproxy, run in process through its Go API, so a test can
// make the dependency hang, slow down, reset connections or crawl while the
// client keeps its real driver. The chaos scripts drive the same proxy as a
// process (bin/toxiproxy-server, chaos/lib.sh).
//
// The faults are toxiproxy's toxics:
//
//	Hang       timeout toxic, 0 ms: bytes are swallowed, connections stay
//	           open (a stopped peer, a blackholed route); removing it closes
//	           the connections it held
//	Latency    latency toxic: every chunk delayed by latency ± jitter
//	Reset      reset_peer toxic: the next bytes after the delay close the
//	           connection (with SO_LINGER 0, a TCP RST, on connections
//	           opened after the toxic was added)
//	Bandwidth  bandwidth toxic: at most n KB/s
//	Slice      slicer toxic: data cut into small packets, each delayed
//
// and Disable / Enable, which close the listener and every connection (the
// port refuses, as for a killed peer) and open it again.
package faultproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Direction is which way a fault acts.
type Direction int

// The directions. Upstream is client → dependency (requests), Downstream
// dependency → client (answers); a fault on Downstream only lets requests
// through and loses their answers, the case where a write's outcome is
// unknown to the client.
const (
	Both Direction = iota
	Upstream
	Downstream
)

func (d Direction) streams() []string {
	switch d {
	case Upstream:
		return []string{"upstream"}
	case Downstream:
		return []string{"downstream"}
	}
	return []string{"upstream", "downstream"}
}

// Proxy is one proxy, listening on 127.0.0.1, in front of one upstream.
type Proxy struct {
	name string
	p    *toxiproxy.Proxy

	mu   sync.Mutex
	seq  int
	open map[string]bool // names of the toxics in place
}

// New starts a proxy named name (used in toxic names and errors) that
// listens on 127.0.0.1 on a free port and forwards to upstream
// ("host:port"). Close it when done.
func New(name, upstream string) (*Proxy, error) {
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := server.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("faultproxy %s: start: %w", name, err)
	}
	return &Proxy{name: name, p: p, open: map[string]bool{}}, nil
}

// Start starts a proxy for a test and closes it in t.Cleanup.
func Start(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	p, err := New(name, upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's "127.0.0.1:port"; point the client here. It stays
// the same across Disable and Enable.
func (p *Proxy) Addr() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Listen
}

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Upstream
}

// SetUpstream points the proxy at another address, keeping its own; open
// connections are closed. A proxy whose address the upstream must know
// before it starts (a broker advertising it) is started with a placeholder
// upstream and pointed at the real one once that listens.
func (p *Proxy) SetUpstream(upstream string) error {
	if err := p.p.Update(&toxiproxy.Proxy{Listen: p.Addr(), Upstream: upstream, Enabled: true}); err != nil {
		return fmt.Errorf("faultproxy %s: set upstream %s: %w", p.name, upstream, err)
	}
	return nil
}

// Close removes every fault and stops the proxy, closing its connections.
func (p *Proxy) Close() {
	p.Heal()
	p.p.Stop()
}

// Hang swallows every byte in direction d and keeps the connections open,
// new ones included: the peer looks alive and never answers. Heal ends it
// (and closes the connections it held).
func (p *Proxy) Hang(d Direction) error {
	return p.add("timeout", d, map[string]any{"timeout": 0})
}

// Latency delays every chunk in direction d by latency ± jitter.
func (p *Proxy) Latency(d Direction, latency, jitter time.Duration) error {
	return p.add("latency", d, map[string]any{"latency": latency.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// Reset closes each connection when bytes next flow in direction d, after
// the delay: a request (Upstream) or its answer (Downstream) cut mid-way.
// Connections opened after Reset get a TCP RST, older ones a FIN.
func (p *Proxy) Reset(d Direction, after time.Duration) error {
	return p.add("reset_peer", d, map[string]any{"timeout": after.Milliseconds()})
}

// Bandwidth limits direction d to kbps kilobytes per second.
func (p *Proxy) Bandwidth(d Direction, kbps int) error {
	return p.add("bandwidth", d, map[string]any{"rate": kbps})
}

// Slice cuts direction d into packets of about size bytes (± variation),
// each delayed by delay.
func (p *Proxy) Slice(d Direction, size, variation int, delay time.Duration) error {
	return p.add("slicer", d, map[string]any{"average_size": size, "size_variation": variation,
		"delay": delay.Microseconds()})
}

// Heal removes every fault. Connections a Hang held are closed; data a
// Latency delayed is delivered.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name := range p.open {
		// An unknown toxic can only be one already gone.
		_ = p.p.Toxics.RemoveToxic(context.Background(), name)
		delete(p.open, name)
	}
}

// Disable closes the listener and every connection: the port refuses, as
// for a dead peer. Enable listens again on the same address.
func (p *Proxy) Disable() { p.p.Stop() }

// Enable undoes Disable.
func (p *Proxy) Enable() error {
	if err := p.p.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return fmt.Errorf("faultproxy %s: enable: %w", p.name, err)
	}
	return nil
}

// Faults lists the faults in place by toxic name ("timeout_downstream_3").
func (p *Proxy) Faults() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.open))
	for name := range p.open {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func (p *Proxy) add(kind string, d Direction, attrs map[string]any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	for _, stream := range d.streams() {
		name := fmt.Sprintf("%s_%s_%d", kind, stream, p.seq)
		body, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": stream,
			"toxicity": 1.0, "attributes": attrs})
		if err != nil {
			return err
		}
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
			return fmt.Errorf("faultproxy %s: add %s: %w", p.name, name, err)
		}
		p.open[name] = true
	}
	return nil
}
