package app

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/mqchat/mqchat/internal/config"
)

// Operator endpoints: /metrics and Go's profiles. With http.metrics_addr
// empty, /metrics stays on the public HTTP API (one port to scrape, as
// before); set, it moves to a listener of its own and the API answers 404
// for it, so the public port reveals nothing about the node's load. pprof
// is never on the public port: it has its own loopback listener
// (http.pprof_addr), which may be the metrics one.

// publicMetrics is the /metrics handler of the public API: nil (no route)
// when metrics have a listener of their own.
func publicMetrics(cfg config.Config, h http.Handler) http.Handler {
	if cfg.HTTP.MetricsAddr != "" {
		return nil
	}
	return h
}

// metricsServer is the listener of http.metrics_addr, nil when unset. It
// serves profiles too when http.pprof_addr names the same address.
func metricsServer(cfg config.Config, h http.Handler) *http.Server {
	if cfg.HTTP.MetricsAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Addr: cfg.HTTP.MetricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if cfg.HTTP.PprofAddr == cfg.HTTP.MetricsAddr {
		handlePprof(mux) // no WriteTimeout then: a CPU profile streams
	} else {
		srv.WriteTimeout = 30 * time.Second
	}
	return srv
}

func handlePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

func (a *App) startMetrics() error {
	if a.metrics == nil {
		return nil
	}
	ln, err := net.Listen("tcp", a.metrics.Addr)
	if err != nil {
		return fmt.Errorf("app: listen metrics %s: %w", a.metrics.Addr, err)
	}
	a.metricsLn = ln
	go func() {
		if err := a.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "error", err)
		}
	}()
	return nil
}
