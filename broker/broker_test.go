package broker

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestPubSubV5 runs the same v5 round trip over every transport.
func TestPubSubV5(t *testing.T) {
	certFile, keyFile, pool := testCert(t)
	b := startBroker(t, Options{
		TLSAddr: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile,
		WSAddr: "127.0.0.1:0", WSPath: "/mqtt",
	})
	addrs := b.Addrs()

	tests := []struct {
		name string
		dial func(t *testing.T) net.Conn
	}{
		{"tcp", func(t *testing.T) net.Conn { return dialTCP(t, addrs.TCP) }},
		{"tls", func(t *testing.T) net.Conn { return dialTLS(t, addrs.TLS, pool) }},
		{"ws", func(t *testing.T) net.Conn { return dialWS(t, "ws://"+addrs.WS+"/mqtt") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := connectV5(t, tc.dial(t), &paho.Connect{ClientID: "v5-" + tc.name, CleanStart: true})
			topic := "chat/" + tc.name
			c.subscribe(t, topic)
			c.publish(t, topic, "hello over "+tc.name)
			c.expect(t, topic, "hello over "+tc.name)
		})
	}
}

// TestInlinePublish checks the chat services' path into the broker.
func TestInlinePublish(t *testing.T) {
	b := startBroker(t, Options{})
	c, _ := connectV5(t, dialTCP(t, b.Addrs().TCP), &paho.Connect{ClientID: "sub", CleanStart: true})
	c.subscribe(t, "chat/inline")
	if err := b.Server().Publish("chat/inline", []byte("from service"), false, 1); err != nil {
		t.Fatalf("inline publish: %v", err)
	}
	c.expect(t, "chat/inline", "from service")
}

func TestAddrs(t *testing.T) {
	b := startBroker(t, Options{})
	a := b.Addrs()
	if strings.HasSuffix(a.TCP, ":0") || a.TCP == "" {
		t.Fatalf("TCP addr %q is not the bound address", a.TCP)
	}
	if a.TLS != "" || a.WS != "" {
		t.Fatalf("disabled listeners report addresses: %+v", a)
	}
}

func TestCapabilities(t *testing.T) {
	b := startBroker(t, Options{
		ClientWritesPending: 64,
		MaxInflight:         100,
		ReceiveMaximum:      50,
		SessionExpiry:       90*time.Minute + 500*time.Millisecond,
		MaxPacketSize:       64 << 10,
	})
	got := *b.Server().Options.Capabilities
	want := *mqtt.NewDefaultServerCapabilities()
	want.MaximumClientWritesPending = 64
	want.MaximumInflight = 100
	want.ReceiveMaximum = 50
	want.MaximumSessionExpiryInterval = 90*60 + 1 // rounded up
	want.MaximumPacketSize = 64 << 10
	if got != want {
		t.Fatalf("capabilities\n got %+v\nwant %+v", got, want)
	}
	if got.MaximumMessageExpiryInterval != 24*60*60 {
		t.Fatalf("MaximumMessageExpiryInterval changed to %d", got.MaximumMessageExpiryInterval)
	}
	if !b.Server().Options.InlineClient {
		t.Fatal("inline client disabled")
	}
}

func TestNewRejects(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no tcp addr", Options{TCPAddr: ""}, "TCPAddr"},
		{"tls without cert", Options{TLSAddr: ":0"}, "TLSCert"},
		{"ws path without slash", Options{WSAddr: ":0", WSPath: "mqtt"}, "WSPath"},
		{"negative writes pending", Options{ClientWritesPending: -1}, "ClientWritesPending"},
		{"inflight too big", Options{MaxInflight: 1 << 16}, "MaxInflight"},
		{"receive maximum too big", Options{ReceiveMaximum: 1 << 16}, "ReceiveMaximum"},
		{"negative session expiry", Options{SessionExpiry: -time.Second}, "SessionExpiry"},
		{"session expiry too long", Options{SessionExpiry: 200 * 365 * 24 * time.Hour}, "SessionExpiry"},
		{"tcp port taken", Options{TCPAddr: taken.Addr().String()}, taken.Addr().String()},
		{"ws port taken", Options{WSAddr: taken.Addr().String()}, taken.Addr().String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if opts.TCPAddr == "" && tc.name != "no tcp addr" {
				opts.TCPAddr = "127.0.0.1:0"
			}
			opts.Logger = slog.New(slog.DiscardHandler)
			b, err := New(opts)
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded, want error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestCloseTwiceAndStartAfterClose(t *testing.T) {
	b, err := New(Options{TCPAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addrs().WS
	// Closing before Start must still release the sockets bound by New.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("ws port still bound after Close: %v", err)
	}
	_ = ln.Close()
}
