package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/client"
	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/apptest"
)

// waitTimeout bounds every wait; reached only when something is wrong.
const waitTimeout = 20 * time.Second

// chatd is a real chatd node in this process, on loopback ports, as
// `chatd serve` wires it.
type chatd struct {
	addrs app.Addrs
	base  string
}

func startChatd(tb testing.TB) *chatd {
	tb.Helper()
	cfg := apptest.Config(tb.TempDir())
	apptest.Unthrottled(&cfg)
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	a := apptest.Start(tb, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &chatd{addrs: a.Addrs(), base: "http://" + a.Addrs().HTTP}
}

// register makes an account over REST and returns its user id.
func (s *chatd) register(tb testing.TB, name string) string {
	tb.Helper()
	raw, _ := json.Marshal(map[string]string{"username": name, "password": name + " password"})
	res, err := http.Post(s.base+"/v1/auth/register", "application/json", bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var out struct {
		UserID string `json:"user_id"`
	}
	if res.StatusCode != http.StatusCreated || json.NewDecoder(res.Body).Decode(&out) != nil {
		tb.Fatalf("register %s: status %d", name, res.StatusCode)
	}
	return out.UserID
}

// login returns a fresh access token of name.
func (s *chatd) login(tb testing.TB, name string) string {
	tb.Helper()
	raw, _ := json.Marshal(map[string]string{"username": name, "password": name + " password"})
	res, err := http.Post(s.base+"/v1/auth/login", "application/json", bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&tok) != nil {
		tb.Fatalf("login %s: status %d", name, res.StatusCode)
	}
	return tok.AccessToken
}

// history is chat's first 200 messages, read over REST as name.
func (s *chatd) history(tb testing.TB, name, chat string) []client.Message {
	tb.Helper()
	req, _ := http.NewRequest("GET", s.base+"/v1/chats/"+chat+"/messages?after=0&limit=200", nil)
	req.Header.Set("Authorization", "Bearer "+s.login(tb, name))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var page struct {
		Messages []client.Message `json:"messages"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&page) != nil {
		tb.Fatalf("history %s: status %d", chat, res.StatusCode)
	}
	return page.Messages
}

// cutter is a Dialer whose connections a test can cut (the TCP socket
// closed under the client) and whose new dials it can refuse for a while.
type cutter struct {
	mu      sync.Mutex
	conns   []net.Conn
	blocked bool
	dials   int
}

func (c *cutter) dial(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.blocked {
		return nil, errors.New("network down (test)")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.conns = append(c.conns, conn)
	c.dials++
	return conn, nil
}

// cut breaks every connection made so far as a network failure does:
// both directions shut down, so each side reads the end of the stream.
// (Closing the socket itself would look to paho.mqtt.golang like its own
// deliberate close, which it does not report.)
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.(*net.TCPConn).CloseWrite()
		_ = conn.(*net.TCPConn).CloseRead()
	}
	c.conns = nil
}

func (c *cutter) block(b bool) {
	c.mu.Lock()
	c.blocked = b
	c.mu.Unlock()
}

func (c *cutter) dialCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// dial connects name (registered already) with protocol version v.
func (s *chatd) dial(tb testing.TB, name string, v int, cut *cutter) *client.Client {
	return s.dialWith(tb, name, v, cut, nil)
}

// dialWith is dial with the options changed by mutate.
func (s *chatd) dialWith(tb testing.TB, name string, v int, cut *cutter, mutate func(*client.Options)) *client.Client {
	tb.Helper()
	o := client.Options{
		MQTTAddr: s.addrs.MQTT, HTTPBase: s.base, Username: name, Password: name + " password",
		DeviceID: "dev", ProtocolVersion: v, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		RequestTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if cut != nil {
		o.Dialer = cut.dial
	}
	if mutate != nil {
		mutate(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err != nil {
		tb.Fatalf("dial %s: %v", name, err)
	}
	tb.Cleanup(c.Close)
	return c
}

// nextMessages reads n messages of type typ ("" = any).
func nextMessages(tb testing.TB, c *client.Client, n int, typ string) []client.Message {
	tb.Helper()
	var out []client.Message
	deadline := time.After(waitTimeout)
	for len(out) < n {
		select {
		case m := <-c.Messages():
			if typ == "" || m.Type == typ {
				out = append(out, m)
			}
		case <-deadline:
			tb.Fatalf("got %d of %d messages: %+v", len(out), n, out)
		}
	}
	return out
}

// nextEvent waits for an event that pred accepts.
func nextEvent(tb testing.TB, c *client.Client, what string, pred func(client.Event) bool) client.Event {
	tb.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e := <-c.Events():
			if pred(e) {
				return e
			}
		case <-deadline:
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

func directChat(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// testWriter sends logs to the test's output, shown only when it fails.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
