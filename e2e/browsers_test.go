package e2e

// Browsers: which pages may use chatd (the origin policy shared by the
// WebSocket and the REST API's CORS), and TLS served by chatd itself with
// certificates renewed while it runs.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqchat/mqchat/client"
	"github.com/mqchat/mqchat/internal/apptest"
	"github.com/mqchat/mqchat/internal/testcert"
)

// lockedBuffer collects a node's log output, written from its goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hasLine reports whether one line of s holds every part.
func hasLine(s string, parts ...string) bool {
next:
	for line := range strings.SplitSeq(s, "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// wsDial opens MQTT over WebSocket as a page of origin would ("" sends no
// Origin); the status is the handshake's answer.
func wsDial(url, origin string, tlsConfig *tls.Config) (net.Conn, int, error) {
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout, TLSClientConfig: tlsConfig}
	header := http.Header{}
	if origin != "" {
		header.Set("Origin", origin)
	}
	ws, resp, err := d.Dial(url, header)
	status := 0
	if resp != nil {
		status = resp.StatusCode
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, status, err
	}
	return packets.NewThreadSafeConn(client.WebSocketConn(ws)), status, nil
}

func TestBrowserOrigins(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.AllowedOrigins = []string{"https://app.example.com"}
	// The deprecated name still counts.
	cfg.MQTT.WSAllowedOrigins = []string{"https://old.example.com"}
	logs := &lockedBuffer{}
	t.Cleanup(func() { // runs after the server's shutdown, registered below
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	a := apptest.Start(t, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	addrs := a.Addrs()
	s := &server{app: a, cfg: cfg, addrs: addrs, base: "http://" + addrs.HTTP}
	wsURL := "ws://" + addrs.WS + cfg.MQTT.WSPath
	// /app/ as chatd serves it: on the REST port, the WebSocket on another.
	ownPage := "http://" + addrs.HTTP

	alice := s.register(t, "alice")
	bob := s.register(t, "bob")

	t.Run("chat from pages that may", func(t *testing.T) {
		for i, origin := range []string{"https://app.example.com", "https://old.example.com", ownPage, ""} {
			conn, status, err := wsDial(wsURL, origin, nil)
			if err != nil {
				t.Fatalf("origin %q: handshake %d: %v", origin, status, err)
			}
			bobPage := dialV5(t, conn, bob, fmt.Sprintf("page%d", i))
			if rc := bobPage.subscribe(t, "users/"+bob.ID+"/inbox"); rc[0] != 1 {
				t.Fatalf("subscribe: reason %v", rc)
			}
			alicePhone := dialV5(t, tcpConn(t, addrs.MQTT), alice, fmt.Sprintf("phone%d", i))
			body := "hello page " + origin
			alicePhone.send(t, bob.ID, fmt.Sprintf("c%d", i), body)
			got := bobPage.box.next(t, "the message on the page", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
			if string(got.Body) != fmt.Sprintf("%q", body) {
				t.Fatalf("page got %s, want %q", got.Body, body)
			}
		}
	})

	t.Run("pages that may not", func(t *testing.T) {
		for _, origin := range []string{"https://evil.example.com", "null", "http://127.0.0.1:1"} {
			if _, status, err := wsDial(wsURL, origin, nil); err == nil || status != http.StatusForbidden {
				t.Fatalf("origin %q: status %d (%v), want 403", origin, status, err)
			}
			if !hasLine(logs.String(), "level=INFO", "websocket refused", "origin="+origin, "reason=") {
				t.Fatalf("no info line for the refused origin %q:\n%s", origin, logs)
			}
		}
	})

	t.Run("CORS", func(t *testing.T) {
		// A page on the WebSocket port (same host, chatd's own) logs in.
		wsPage := "http://" + addrs.WS
		for _, origin := range []string{"https://app.example.com", wsPage} {
			res := rawHTTP(t, s, http.MethodOptions, "/v1/auth/login", map[string]string{
				"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
			}, "")
			if res.status != http.StatusNoContent || res.header.Get("Access-Control-Allow-Origin") != origin ||
				!strings.Contains(res.header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
				t.Fatalf("preflight from %s: %d %v", origin, res.status, res.header)
			}
			login := `{"username":"alice","password":"correct horse"}`
			res = rawHTTP(t, s, http.MethodPost, "/v1/auth/login", map[string]string{"Origin": origin}, login)
			if res.status != http.StatusOK || res.header.Get("Access-Control-Allow-Origin") != origin {
				t.Fatalf("login from %s: %d %v %s", origin, res.status, res.header, res.body)
			}
		}
		res := rawHTTP(t, s, http.MethodGet, "/v1/me", map[string]string{"Origin": "https://evil.example.com", "Authorization": "Bearer " + alice.Token}, "")
		if res.status != http.StatusForbidden || res.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("request from a foreign page: %d %v", res.status, res.header)
		}
		if !hasLine(logs.String(), "level=INFO", "cross-origin request refused", "origin=https://evil.example.com", "reason=") {
			t.Fatalf("no info line for the refused request:\n%s", logs)
		}
	})

	if !hasLine(logs.String(), "level=WARN", "mqtt.ws_allowed_origins is deprecated") {
		t.Errorf("no deprecation warning for mqtt.ws_allowed_origins:\n%s", logs)
	}
}

// TestTLSReloadOnSIGHUP runs the binary with HTTPS and wss:// and replaces
// both certificates while a client stays connected over wss://: after
// SIGHUP new handshakes get the new certificate, and the connection made
// before carries on.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	bin := chatdBinary(t)
	dir := t.TempDir()
	first := testcert.Write(t, dir, 1)
	wsAddr := freePort(t)
	p := launchChatd(t, bin, "chatd (tls)", filepath.Join(t.TempDir(), "data"), procOpts{args: []string{
		"--log.level", "info",
		"--http.tls_cert", first.CertFile, "--http.tls_key", first.KeyFile,
		"--mqtt.ws_addr", wsAddr,
		"--mqtt.ws_tls_cert", first.CertFile, "--mqtt.ws_tls_key", first.KeyFile,
	}})
	base := "https://" + p.httpAddr
	second := testcert.Write(t, t.TempDir(), 2) // trusted now, installed below
	trust := &tls.Config{RootCAs: testcert.Pool(first, second), MinVersion: tls.VersionTLS12}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: trust}}
	eventually(t, "chatd answering over HTTPS", func() error {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	served := func(addr string) (int64, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: trust}
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	for _, addr := range []string{p.httpAddr, wsAddr} {
		if got, err := served(addr); err != nil || got != 1 {
			t.Fatalf("%s serves certificate %d (%v), want 1", addr, got, err)
		}
	}

	var tok struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	register := func(name string) account {
		resp, err := client.Post(base+"/v1/auth/register", "application/json", strings.NewReader(`{"username":"`+name+`","password":"correct horse"}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &tok) != nil {
			t.Fatalf("register over HTTPS: %d %s", resp.StatusCode, raw)
		}
		return account{ID: tok.UserID, Username: name, Token: tok.AccessToken}
	}
	carol, dave := register("carol"), register("dave")
	conn, status, err := wsDial("wss://"+wsAddr+"/mqtt", "", trust)
	if err != nil {
		t.Fatalf("wss handshake %d: %v", status, err)
	}
	page := dialV5(t, conn, carol, "page")
	page.send(t, dave.ID, "before", "before the renewal")

	// The renewal: new files in place, then the signal.
	install(t, second, first)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{p.httpAddr, wsAddr} {
		eventually(t, "the renewed certificate on "+addr, func() error {
			got, err := served(addr)
			if err != nil {
				return err
			}
			if want := second.Cert.SerialNumber.Int64(); got != want {
				return fmt.Errorf("serves certificate %d", got)
			}
			return nil
		})
	}
	if !hasLine(p.stderr.String(), "SIGHUP: reloading TLS certificates") || !hasLine(p.stderr.String(), "TLS certificate reloaded", "mqtt.ws_tls_cert") {
		t.Fatalf("no reload in the log:\n%s", p.stderr)
	}
	// The connection from before the renewal still works: PUBACK 0
	// means stored.
	page.send(t, dave.ID, "after", "after the renewal")
	p.stop(t)
}

// install copies a certificate pair over another's files, as a renewal
// does: each file replaced whole through a rename.
func install(t *testing.T, from, to testcert.Pair) {
	t.Helper()
	for _, f := range [][2]string{{from.CertFile, to.CertFile}, {from.KeyFile, to.KeyFile}} {
		raw, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1]+".new", raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f[1]+".new", f[1]); err != nil {
			t.Fatal(err)
		}
	}
}
