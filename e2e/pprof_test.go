package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
)

// Profiles are served only when http.pprof_addr is set, on their own
// listener, never on the public API.
func TestPprofOnlyWhenConfigured(t *testing.T) {
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	off := startServer(t, nil)
	if off.addrs.Pprof != "" {
		t.Fatalf("pprof listening at %s without http.pprof_addr", off.addrs.Pprof)
	}
	if code, _ := get(off.base + "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("public API /debug/pprof/: status %d, want 404", code)
	}

	on := startServer(t, func(c *config.Config) { c.HTTP.PprofAddr = "127.0.0.1:0" })
	code, body := get("http://" + on.addrs.Pprof + "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: status %d: %.200s", code, body)
	}
	if code, _ := get(on.base + "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("public API /debug/pprof/ with pprof on: status %d, want 404", code)
	}
}
