package broker

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
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
		origin      string // "self" means the broker's own http origin
		wantStatus  int
	}{
		{name: "wrong path", path: "/other", wantStatus: http.StatusNotFound},
		{name: "path prefix", path: "/mqtt/x", wantStatus: http.StatusNotFound},
		{name: "no subprotocol", subprotocol: []string{}, wantStatus: http.StatusBadRequest},
		{name: "other subprotocol", subprotocol: []string{"mqttv3.1"}, wantStatus: http.StatusBadRequest},
		{name: "no origin", wantStatus: http.StatusSwitchingProtocols},
		{name: "foreign origin, empty allowlist", origin: "https://evil.example.com", wantStatus: http.StatusForbidden},
		{name: "null origin, empty allowlist", origin: "null", wantStatus: http.StatusForbidden},
		{name: "same host, empty allowlist", origin: "self", wantStatus: http.StatusSwitchingProtocols},
		{name: "allowlisted", allow: []string{"https://App.Example.com"}, origin: "https://app.example.com", wantStatus: http.StatusSwitchingProtocols},
		{name: "allowlisted, default port", allow: []string{"https://app.example.com:443"}, origin: "https://app.example.com", wantStatus: http.StatusSwitchingProtocols},
		{name: "allowlist, other scheme", allow: []string{"https://app.example.com"}, origin: "http://app.example.com", wantStatus: http.StatusForbidden},
		{name: "allowlist, other host", allow: []string{"https://app.example.com"}, origin: "https://evil.example.com", wantStatus: http.StatusForbidden},
		{name: "allowlist excludes same host", allow: []string{"https://app.example.com"}, origin: "self", wantStatus: http.StatusForbidden},
		{name: "star", allow: []string{"*"}, origin: "https://evil.example.com", wantStatus: http.StatusSwitchingProtocols},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, Options{WSAddr: "127.0.0.1:0", WSPath: "/mqtt", WSAllowedOrigins: tc.allow})
			addr := b.Addrs().WS
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
			if tc.wantStatus == http.StatusSwitchingProtocols && ws.Subprotocol() != "mqtt" {
				t.Fatalf("negotiated subprotocol %q", ws.Subprotocol())
			}
			if tc.wantStatus == http.StatusBadRequest {
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), `"mqtt"`) {
					t.Fatalf("400 body %q does not explain the subprotocol", body)
				}
			}
		})
	}
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
