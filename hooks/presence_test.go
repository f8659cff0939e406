package hooks

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/mqtttest"
	"github.com/mqchat/mqchat/services/presence"
)

type presenceCall struct {
	uid, clientID string
	gen           uint64
	cause         presence.Cause // "" for a Connected
}

// trackerRecorder hands the hook's calls to a real presence service and
// reports each one.
type trackerRecorder struct {
	svc   *presence.Service
	calls chan presenceCall
}

func (r *trackerRecorder) Connected(uid, clientID string) uint64 {
	g := r.svc.Connected(uid, clientID)
	r.calls <- presenceCall{uid, clientID, g, ""}
	return g
}

func (r *trackerRecorder) Disconnected(uid, clientID string, gen uint64, cause presence.Cause) {
	r.svc.Disconnected(uid, clientID, gen, cause)
	r.calls <- presenceCall{uid, clientID, gen, cause}
}

type discardPresence struct{}

func (discardPresence) PublishPresence(string, []byte) error { return nil }

// TestPresenceMoving closes a real connection in a real mochi server the
// ways the cluster and mochi do, and checks the cause the presence hook
// reports and whether the device is still counted.
func TestPresenceMoving(t *testing.T) {
	tests := []struct {
		name  string
		close func(t *testing.T, h *Presence, srv *mqtt.Server, cl *mqtt.Client, c *paho.Client, addr string)
		// after runs once the end of the connection was reported.
		after       func(h *Presence, cl *mqtt.Client)
		cause       presence.Cause
		devicesLeft int
	}{
		{
			name: "moving to another node counts the device out",
			close: func(t *testing.T, h *Presence, srv *mqtt.Server, cl *mqtt.Client, _ *paho.Client, _ string) {
				h.Moving(cl)
				_ = srv.DisconnectClient(cl, packets.ErrSessionTakenOver)
			},
			cause: presence.CauseMoved,
		},
		{
			name: "the same close without Moving is a takeover that keeps the device",
			// mochi's own takeover: the same client id connects again. (A
			// bare DisconnectClient with 0x8E races the client closing its
			// socket on the DISCONNECT, which reads as a lost connection.)
			close: func(t *testing.T, h *Presence, srv *mqtt.Server, cl *mqtt.Client, _ *paho.Client, addr string) {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				again := paho.NewClient(paho.ClientConfig{Conn: pahopackets.NewThreadSafeConn(conn)})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := again.Connect(ctx, &paho.Connect{ClientID: "alice/phone", Username: "alice", UsernameFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
					t.Fatal(err)
				}
			},
			cause:       presence.CauseTakeover,
			devicesLeft: 1,
		},
		{
			name: "moving a client that already left marks nothing",
			close: func(t *testing.T, h *Presence, srv *mqtt.Server, cl *mqtt.Client, c *paho.Client, _ string) {
				if err := c.Disconnect(&paho.Disconnect{}); err != nil {
					t.Fatal(err)
				}
			},
			after: func(h *Presence, cl *mqtt.Client) { h.Moving(cl) },
			cause: presence.CauseDisconnect,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := presence.New(discardPresence{}, presence.Options{})
			t.Cleanup(svc.Close)
			tr := &trackerRecorder{svc: svc, calls: make(chan presenceCall, 8)}
			h := NewPresence(tr)
			srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
			for _, hook := range []mqtt.Hook{new(mqtttest.AllowAll), h} {
				if err := srv.AddHook(hook, nil); err != nil {
					t.Fatal(err)
				}
			}
			addr := mqtttest.ServeTCP(t, srv)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{Conn: pahopackets.NewThreadSafeConn(conn)})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := c.Connect(ctx, &paho.Connect{ClientID: "alice/phone", Username: "alice", UsernameFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })

			in := next(ctx, t, tr.calls)
			if in.cause != "" || in.gen == 0 || svc.Devices("alice") != 1 {
				t.Fatalf("connect reported %+v, %d devices", in, svc.Devices("alice"))
			}
			cl, ok := srv.Clients.Get("alice/phone")
			if !ok {
				t.Fatal("client not in the server")
			}
			tt.close(t, h, srv, cl, c, addr)
			out := next(ctx, t, tr.calls)
			for out.cause == "" && out.gen != in.gen { // the successor's connect (takeover)
				out = next(ctx, t, tr.calls)
			}
			if want := (presenceCall{"alice", "alice/phone", in.gen, tt.cause}); out != want {
				t.Fatalf("disconnect reported %+v, want %+v", out, want)
			}
			if tt.after != nil {
				tt.after(h, cl)
			}
			if n := svc.Devices("alice"); n != tt.devicesLeft {
				t.Fatalf("%d devices left, want %d", n, tt.devicesLeft)
			}
			if _, marked := h.moving.Load("alice/phone"); marked {
				t.Fatal("a Moving mark outlived its connection")
			}
		})
	}
}

func next(ctx context.Context, t *testing.T, calls <-chan presenceCall) presenceCall {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-ctx.Done():
		t.Fatal("no presence call")
		return presenceCall{}
	}
}
