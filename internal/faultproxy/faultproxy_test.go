package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo serves a line-echo server on 127.0.0.1 for the test.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes a line and reads it back within d.
func roundTrip(c net.Conn, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo answered " + line)
	}
	return nil
}

func TestHangKeepsConnectionsOpenAndHealCloses(t *testing.T) {
	p := Start(t, "echo", echo(t))
	c := dial(t, p.Addr())
	if err := roundTrip(c, 5*time.Second); err != nil {
		t.Fatalf("before the fault: %v", err)
	}
	if err := p.Hang(Both); err != nil {
		t.Fatal(err)
	}
	err := roundTrip(c, 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("during the hang: err = %v, want a timeout (connection open, no answer)", err)
	}
	fresh := dial(t, p.Addr()) // new connections are accepted, and hang too
	if err := roundTrip(fresh, 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("new connection during the hang: err = %v, want a timeout", err)
	}
	if got := p.Faults(); len(got) != 2 {
		t.Fatalf("faults = %v, want the two directions", got)
	}
	p.Heal()
	if err := roundTrip(c, 5*time.Second); err == nil {
		t.Fatal("a connection the hang held still works after Heal; toxiproxy closes it")
	}
	if err := roundTrip(dial(t, p.Addr()), 5*time.Second); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}

func TestDownstreamHangLetsRequestsThrough(t *testing.T) {
	got := make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
		_, _ = c.Write([]byte(line))
		time.Sleep(time.Second) // keep it open while the client waits
	}()
	p := Start(t, "sink", ln.Addr().String())
	if err := p.Hang(Downstream); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	err = roundTrip(c, 500*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	select {
	case line := <-got:
		if line != "ping\n" {
			t.Fatalf("upstream got %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the upstream: a downstream hang must let it through")
	}
}

func TestLatencyDelaysAnswers(t *testing.T) {
	p := Start(t, "echo", echo(t))
	if err := p.Latency(Downstream, 200*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	start := time.Now()
	if err := roundTrip(c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: the proxy cannot answer sooner than it delays.
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("round trip took %s, want at least the 200ms latency", took)
	}
}

func TestResetCutsConnections(t *testing.T) {
	p := Start(t, "echo", echo(t))
	if err := p.Reset(Upstream, 0); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	err := roundTrip(c, 5*time.Second)
	if err == nil {
		t.Fatal("round trip succeeded through reset_peer")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("err = %v, want the connection cut, not a timeout", err)
	}
}

func TestDisableRefusesAndEnableComesBack(t *testing.T) {
	p := Start(t, "echo", echo(t))
	addr := p.Addr()
	c := dial(t, addr)
	p.Disable()
	if err := roundTrip(c, 5*time.Second); err == nil {
		t.Fatal("an open connection survived Disable")
	}
	_, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while disabled: %v, want connection refused", err)
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, p.Addr())
	}
	if err := roundTrip(dial(t, addr), 5*time.Second); err != nil {
		t.Fatalf("after Enable: %v", err)
	}
}

func TestBandwidthAndSlice(t *testing.T) {
	p := Start(t, "echo", echo(t))
	if err := p.Bandwidth(Downstream, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Slice(Upstream, 1, 0, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(dial(t, p.Addr()), 10*time.Second); err != nil {
		t.Fatalf("a small round trip at 1 KB/s in sliced packets: %v", err)
	}
}
