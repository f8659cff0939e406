package api

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/internal/origin"
)

func TestCORS(t *testing.T) {
	policy, err := origin.New([]string{"https://app.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv := httptest.NewServer(New(Options{Origins: policy, Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	t.Cleanup(srv.Close)
	host, _, _ := net.SplitHostPort(srv.Listener.Addr().String())
	// A page chatd serves from another of its ports (the WebSocket one,
	// say), and one from a port that is not chatd's.
	ownPage := "http://" + listen(t)
	policy.AddOwnPort(strings.TrimPrefix(ownPage, "http://"))
	policy.AddOwnPort(srv.Listener.Addr().String())
	strangerPage := "http://" + listen(t)

	tests := []struct {
		name      string
		method    string
		path      string
		origin    string
		preflight string // Access-Control-Request-Method
		status    int
		allowed   bool // Access-Control-Allow-Origin echoes the origin
	}{
		{name: "preflight, listed origin", method: http.MethodOptions, path: "/v1/chats/x/messages/1", origin: "https://app.example.com", preflight: "PATCH", status: http.StatusNoContent, allowed: true},
		{name: "preflight, own page", method: http.MethodOptions, path: "/v1/auth/login", origin: ownPage, preflight: "POST", status: http.StatusNoContent, allowed: true},
		{name: "preflight, foreign origin", method: http.MethodOptions, path: "/v1/auth/login", origin: "https://evil.example.com", preflight: "POST", status: http.StatusForbidden},
		{name: "preflight, same host, not chatd's port", method: http.MethodOptions, path: "/v1/auth/login", origin: strangerPage, preflight: "POST", status: http.StatusForbidden},
		{name: "request, listed origin", method: http.MethodGet, path: "/healthz", origin: "https://app.example.com", status: http.StatusOK, allowed: true},
		{name: "request, same origin", method: http.MethodGet, path: "/healthz", origin: srv.URL, status: http.StatusOK, allowed: true},
		{name: "request, foreign origin", method: http.MethodGet, path: "/healthz", origin: "https://evil.example.com", status: http.StatusForbidden},
		{name: "request, no origin", method: http.MethodGet, path: "/healthz", status: http.StatusOK},
		{name: "OPTIONS that is no preflight", method: http.MethodOptions, path: "/healthz", origin: "https://app.example.com", status: http.StatusMethodNotAllowed, allowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.preflight != "" {
				req.Header.Set("Access-Control-Request-Method", tc.preflight)
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			got := resp.Header.Get("Access-Control-Allow-Origin")
			switch {
			case tc.allowed && got != tc.origin:
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, tc.origin)
			case !tc.allowed && got != "":
				t.Fatalf("Access-Control-Allow-Origin %q on a refused or origin-less request", got)
			}
			if tc.origin != "" && !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary %q lacks Origin: a cache would hand one origin's answer to another", resp.Header.Values("Vary"))
			}
			if tc.preflight != "" && tc.allowed {
				for h, want := range map[string][]string{
					"Access-Control-Allow-Methods": {"GET", "POST", "PUT", "PATCH", "DELETE"},
					"Access-Control-Allow-Headers": {"Authorization", "Content-Type", "Idempotency-Key"},
					"Access-Control-Max-Age":       {"3600"},
				} {
					for _, w := range want {
						if !strings.Contains(resp.Header.Get(h), w) {
							t.Errorf("%s %q lacks %s", h, resp.Header.Get(h), w)
						}
					}
				}
			}
			if tc.allowed && tc.preflight == "" && !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
				t.Errorf("Access-Control-Expose-Headers %q lacks Retry-After", resp.Header.Get("Access-Control-Expose-Headers"))
			}
			if tc.status == http.StatusForbidden {
				line := logs.line("cross-origin request refused", tc.origin)
				for _, want := range []string{"level=INFO", "reason=", "host=" + host} {
					if !strings.Contains(line, want) {
						t.Errorf("refusal log %q lacks %q", line, want)
					}
				}
			}
		})
	}
}

// listen binds a loopback port for the test's duration and returns it.
func listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// line returns the first line holding every part.
func (b *syncBuffer) line(parts ...string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
next:
	for line := range strings.SplitSeq(b.buf.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return line
	}
	return ""
}
