package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofServer serves net/http/pprof on its own listener (http.pprof_addr,
// loopback only, off by default), never on the API's router: profiles are
// for an operator on the host, not for API clients.
type pprofServer struct {
	srv *http.Server
	ln  net.Listener
}

func startPprof(addr string, logger *slog.Logger) (*pprofServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// A CPU profile or trace runs for its ?seconds= (at most 5 minutes
	// here); no write timeout would let a client hold it longer.
	p := &pprofServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout: 5*time.Minute + 10*time.Second}}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("pprof server", "error", err)
		}
	}()
	logger.Info("pprof listening", "addr", ln.Addr().String())
	return p, nil
}

func (p *pprofServer) addr() string { return p.ln.Addr().String() }

func (p *pprofServer) close() { _ = p.srv.Close() }
