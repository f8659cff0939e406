package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// waitFor polls cond until it holds; for state with no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (g *guardedListener) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// TestCloseDropsUnconnected checks that a connection which never sends
// CONNECT neither blocks Close (mochi alone would wait on it forever) nor
// survives it.
func TestCloseDropsUnconnected(t *testing.T) {
	tests := []struct {
		name     string
		listener func(b *Broker) listeners.Listener
		dial     func(t *testing.T, b *Broker) io.Reader
	}{
		{
			name:     "tcp",
			listener: func(b *Broker) listeners.Listener { return b.tcp },
			dial: func(t *testing.T, b *Broker) io.Reader {
				c, err := net.Dial("tcp", b.Addrs().TCP)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				return c
			},
		},
		{
			name:     "ws",
			listener: func(b *Broker) listeners.Listener { return b.ws },
			dial: func(t *testing.T, b *Broker) io.Reader {
				d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
				ws, resp, err := d.Dial("ws://"+b.Addrs().WS+"/mqtt", nil)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				t.Cleanup(func() { _ = ws.Close() })
				return newWSConn(ws)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, Options{WSAddr: "127.0.0.1:0"})
			conn := tc.dial(t, b)
			g := tc.listener(b).(*guardedListener)
			waitFor(t, "connection handed to mochi", func() bool { return g.tracked() == 1 })

			closed := make(chan error, 1)
			go func() { closed <- b.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("Close blocked on a connection that never sent CONNECT")
			}
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatal("connection still open after Close")
			}
		})
	}
}

// TestConnectTimeout checks that a silent connection is dropped.
func TestConnectTimeout(t *testing.T) {
	g := guard(listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"}))
	g.connectTimeout = 50 * time.Millisecond
	if err := g.Init(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go g.Serve(func(_ string, c net.Conn) error {
		_, err := c.Read(make([]byte, 1))
		errs <- err
		return err
	})
	defer g.Close(func(string) {})

	c, err := net.Dial("tcp", g.Address())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read ended with %v, want deadline exceeded", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("silent connection not timed out")
	}
}
