package e2e

import (
	"net/http"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
)

// TestMetricsOnOwnListener: with http.metrics_addr set, /metrics leaves the
// public API (404 there) for a listener of its own that serves nothing
// else; traffic shows in it. With pprof_addr equal to it, profiles share
// that listener. Unset, /metrics stays on the API as before.
func TestMetricsOnOwnListener(t *testing.T) {
	status := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("Default", func(t *testing.T) {
		s := startServer(t, nil)
		if s.addrs.Metrics != "" {
			t.Fatalf("metrics listener at %s without http.metrics_addr", s.addrs.Metrics)
		}
		if st := status(s.base + "/metrics"); st != http.StatusOK {
			t.Fatalf("API /metrics: %d, want 200", st)
		}
	})

	t.Run("Separate", func(t *testing.T) {
		s := startServer(t, func(c *config.Config) { c.HTTP.MetricsAddr = "127.0.0.1:0" })
		if s.addrs.Metrics == "" || s.addrs.Metrics == s.addrs.HTTP {
			t.Fatalf("metrics listener %q, API %q: want one of its own", s.addrs.Metrics, s.addrs.HTTP)
		}
		if st := status(s.base + "/metrics"); st != http.StatusNotFound {
			t.Fatalf("API /metrics with metrics_addr set: %d, want 404", st)
		}
		ops := &server{base: "http://" + s.addrs.Metrics}
		before := scrape(t, ops)
		alice := s.register(t, "alice")
		if st := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, alice.ID)+"/messages", alice.Token,
			map[string]any{"body": "note"}, map[string]string{"Idempotency-Key": "n1"}, nil); st != http.StatusCreated {
			t.Fatalf("send: %d", st)
		}
		const stored = `mqchat_messages_sent_total{result="stored"}`
		if after := scrape(t, ops); after[stored] != before[stored]+1 {
			t.Fatalf("%s: %v then %v, want one more", stored, before[stored], after[stored])
		}
		for _, path := range []string{"/healthz", "/v1/auth/login", "/debug/pprof/"} {
			if st := status("http://" + s.addrs.Metrics + path); st != http.StatusNotFound {
				t.Fatalf("metrics listener %s: %d, want 404 (it serves /metrics only)", path, st)
			}
		}
	})

	t.Run("SharedWithPprof", func(t *testing.T) {
		// Port 0 in both: the same address, so one listener serves both,
		// with no window in which another process could take a port
		// picked beforehand.
		s := startServer(t, func(c *config.Config) { c.HTTP.MetricsAddr, c.HTTP.PprofAddr = "127.0.0.1:0", "127.0.0.1:0" })
		addr := s.addrs.Metrics
		if addr == "" || addr == s.addrs.HTTP || s.addrs.Pprof != addr {
			t.Fatalf("metrics %q, pprof %q, API %q: want both on one listener of their own", addr, s.addrs.Pprof, s.addrs.HTTP)
		}
		for _, path := range []string{"/metrics", "/debug/pprof/"} {
			if st := status("http://" + addr + path); st != http.StatusOK {
				t.Fatalf("operator listener %s: %d, want 200", path, st)
			}
		}
		for _, path := range []string{"/metrics", "/debug/pprof/"} {
			if st := status(s.base + path); st != http.StatusNotFound {
				t.Fatalf("API %s: %d, want 404", path, st)
			}
		}
	})
}
