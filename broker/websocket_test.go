package broker

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/mqchat/mqchat/internal/certs"
	"github.com/mqchat/mqchat/internal/origin"
	"github.com/mqchat/mqchat/internal/testcert"
)

// connectV3WS connects paho.mqtt.golang, an independent MQTT-over-WebSocket
// implementation, so the adapter is not only tested against itself.
func connectV3WS(t *testing.T, url, id string) mqtt3.Client {
	t.Helper()
	c := mqtt3.NewClient(mqtt3.NewClientOptions().
		AddBroker(url).
		SetClientID(id).
		SetAutoReconnect(false).
		SetConnectTimeout(waitTimeout))
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func TestWebSocketCrossTransport(t *testing.T) {
	b := startBroker(t, Options{WSAddr: "127.0.0.1:0", WSPath: "/mqtt"})
	url := "ws://" + b.Addrs().WS + "/mqtt"

	t.Run("v3 over ws to v5 over tcp", func(t *testing.T) {
		sub, _ := connectV5(t, dialTCP(t, b.Addrs().TCP), &paho.Connect{ClientID: "tcp-sub", CleanStart: true})
		sub.subscribe(t, "chat/cross")

		pub := connectV3WS(t, url, "ws-pub")
		if tok := pub.Publish("chat/cross", 1, false, "from ws"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("v3 publish: %v", tok.Error())
		}
		sub.expect(t, "chat/cross", "from ws")
	})

	t.Run("inline to v3 over ws", func(t *testing.T) {
		c := connectV3WS(t, url, "ws-sub")
		got := make(chan string, 1)
		tok := c.Subscribe("chat/down", 1, func(_ mqtt3.Client, m mqtt3.Message) { got <- string(m.Payload()) })
		if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("v3 subscribe: %v", tok.Error())
		}
		// Large enough to span several reads of the server's and client's
		// buffers.
		payload := strings.Repeat("x", 100_000)
		if err := b.Server().Publish("chat/down", []byte(payload), false, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p != payload {
				t.Fatalf("payload mangled: got %d bytes", len(p))
			}
		case <-time.After(waitTimeout):
			t.Fatal("no message over ws")
		}
	})
}

func TestWebSocketHandshake(t *testing.T) {
	tests := []struct {
		name        string
		allow       []string
		path        string
		subprotocol []string
		// origin: "self" is the broker's own ws origin, "own page" a page
		// on the same host and another port chatd listens on, "other
		// port" one on a port chatd does not listen on.
		origin     string
		wantStatus int
	}{
		{name: "wrong path", path: "/other", wantStatus: http.StatusNotFound},
		{name: "path prefix", path: "/mqtt/x", wantStatus: http.StatusNotFound},
		{name: "no subprotocol", subprotocol: []string{}, wantStatus: http.StatusBadRequest},
		{name: "other subprotocol", subprotocol: []string{"mqttv3.1"}, wantStatus: http.StatusBadRequest},
		{name: "no origin", wantStatus: http.StatusSwitchingProtocols},
		{name: "foreign origin, empty allowlist", origin: "https://evil.example.com", wantStatus: http.StatusForbidden},
		{name: "null origin, empty allowlist", origin: "null", wantStatus: http.StatusForbidden},
		{name: "same host, empty allowlist", origin: "self", wantStatus: http.StatusSwitchingProtocols},
		{name: "own page on another port", origin: "own page", wantStatus: http.StatusSwitchingProtocols},
		{name: "same host, a port not chatd's", origin: "other port", wantStatus: http.StatusForbidden},
		{name: "allowlisted", allow: []string{"https://App.Example.com"}, origin: "https://app.example.com", wantStatus: http.StatusSwitchingProtocols},
		{name: "allowlisted, default port", allow: []string{"https://app.example.com:443"}, origin: "https://app.example.com", wantStatus: http.StatusSwitchingProtocols},
		{name: "allowlist, other scheme", allow: []string{"https://app.example.com"}, origin: "http://app.example.com", wantStatus: http.StatusForbidden},
		{name: "allowlist, other host", allow: []string{"https://app.example.com"}, origin: "https://evil.example.com", wantStatus: http.StatusForbidden},
		{name: "allowlist keeps own pages", allow: []string{"https://app.example.com"}, origin: "own page", wantStatus: http.StatusSwitchingProtocols},
		{name: "star", allow: []string{"*"}, origin: "https://evil.example.com", wantStatus: http.StatusSwitchingProtocols},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy, err := origin.New(tc.allow)
			if err != nil {
				t.Fatal(err)
			}
			// A second listener of "chatd" (its REST port, say) and a port
			// of someone else's on the same host.
			ownPage := listen(t)
			policy.AddOwnPort(ownPage)
			otherPort := listen(t)
			logs := &logBuffer{}
			b := startBroker(t, Options{WSAddr: "127.0.0.1:0", WSPath: "/mqtt", Origins: policy, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			addr := b.Addrs().WS
			policy.AddOwnPort(addr)
			path := tc.path
			if path == "" {
				path = "/mqtt"
			}
			subprotocol := tc.subprotocol
			if subprotocol == nil {
				subprotocol = []string{"mqtt"}
			}
			header := http.Header{}
			switch tc.origin {
			case "":
			case "self":
				header.Set("Origin", "http://"+addr)
			case "own page":
				header.Set("Origin", "http://"+ownPage)
			case "other port":
				header.Set("Origin", "http://"+otherPort)
			default:
				header.Set("Origin", tc.origin)
			}

			d := websocket.Dialer{Subprotocols: subprotocol, HandshakeTimeout: waitTimeout}
			ws, resp, err := d.Dial("ws://"+addr+path, header)
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			defer resp.Body.Close()
			if ws != nil {
				defer ws.Close()
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (err %v)", resp.StatusCode, tc.wantStatus, err)
			}
			switch tc.wantStatus {
			case http.StatusSwitchingProtocols:
				if ws.Subprotocol() != "mqtt" {
					t.Fatalf("negotiated subprotocol %q", ws.Subprotocol())
				}
			case http.StatusBadRequest:
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), `"mqtt"`) {
					t.Fatalf("400 body %q does not explain the subprotocol", body)
				}
			case http.StatusForbidden:
				// The operator learns which page was refused and why.
				line := logs.line("websocket refused")
				for _, want := range []string{"level=INFO", "origin=" + header.Get("Origin"), "reason="} {
					if !strings.Contains(line, want) {
						t.Fatalf("refusal log %q lacks %q", line, want)
					}
				}
			}
		})
	}
}

// TestWebSocketOriginMQTT runs a real MQTT session over a WebSocket that a
// page of another origin opened: allowed by the list, then refused.
func TestWebSocketOriginMQTT(t *testing.T) {
	policy, err := origin.New([]string{"https://app.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, Options{WSAddr: "127.0.0.1:0", Origins: policy})
	url := "ws://" + b.Addrs().WS + "/mqtt"

	conn, err := dialWSOrigin(url, "https://app.example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := connectV5(t, conn, &paho.Connect{ClientID: "browser", CleanStart: true})
	c.subscribe(t, "chat/origin")
	c.publish(t, "chat/origin", "from a page")
	c.expect(t, "chat/origin", "from a page")

	if _, err := dialWSOrigin(url, "https://evil.example.com", nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("dial from a foreign origin: %v, want a 403", err)
	}
}

func TestWebSocketTLS(t *testing.T) {
	pair := testcert.Write(t, t.TempDir(), 7)
	r, err := certs.Load(pair.CertFile, pair.KeyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, Options{WSAddr: "127.0.0.1:0", WSTLSConfig: r.TLSConfig()})
	url := "wss://" + b.Addrs().WS + "/mqtt"

	if _, err := dialWSOrigin("ws://"+b.Addrs().WS+"/mqtt", "", nil); err == nil {
		t.Fatal("plain ws:// accepted by a wss:// listener")
	}
	conn, err := dialWSOrigin(url, "", &tls.Config{RootCAs: testcert.Pool(pair), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := connectV5(t, conn, &paho.Connect{ClientID: "wss", CleanStart: true})
	c.subscribe(t, "chat/wss")
	c.publish(t, "chat/wss", "over tls")
	c.expect(t, "chat/wss", "over tls")
}

// dialWSOrigin dials MQTT over WebSocket as a page of origin would ("" for
// no Origin header).
func dialWSOrigin(url, origin string, tlsConfig *tls.Config) (net.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout, TLSClientConfig: tlsConfig}
	header := http.Header{}
	if origin != "" {
		header.Set("Origin", origin)
	}
	ws, resp, err := d.Dial(url, header)
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, fmt.Errorf("dial %s (status %d): %w", url, status, err)
	}
	return packets.NewThreadSafeConn(newWSConn(ws)), nil
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

// logBuffer collects log output written from the broker's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// line returns the first line holding msg. The refusal is logged before
// the 403 is written, so it is there once the client has its answer.
func (l *logBuffer) line(msg string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.SplitSeq(l.buf.String(), "\n") {
		if strings.Contains(line, msg) {
			return line
		}
	}
	return ""
}

func TestWebSocketTextFrameRejected(t *testing.T) {
	b := startBroker(t, Options{WSAddr: "127.0.0.1:0", WSPath: "/mqtt"})
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
	ws, resp, err := d.Dial("ws://"+b.Addrs().WS+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The broker drops the connection rather than answering.
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("connection still open after a text frame")
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("broker did not close the connection")
	}
}
