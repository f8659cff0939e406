package broker

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/mqchat/mqchat/internal/mqtttest"
)

// waitTimeout bounds every wait in these tests; it is only reached on
// failure.
const waitTimeout = 5 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startBroker starts a broker on loopback ports chosen by the kernel,
// allowing every client, and closes it when the test ends.
func startBroker(t *testing.T, opts Options) *Broker {
	t.Helper()
	if opts.TCPAddr == "" {
		opts.TCPAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := New(opts, new(mqtttest.AllowAll))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b
}

// v5Client is a paho.golang client whose received publishes arrive on msgs.
type v5Client struct {
	*paho.Client
	msgs chan *paho.Publish
}

// connectV5 runs an MQTT v5 session over conn, which the caller has dialled
// over whichever transport is under test.
func connectV5(t *testing.T, conn net.Conn, cp *paho.Connect) (*v5Client, *paho.Connack) {
	t.Helper()
	msgs := make(chan *paho.Publish, 16)
	c := paho.NewClient(paho.ClientConfig{
		ClientID: cp.ClientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				msgs <- pr.Packet
				return true, nil
			},
		},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ack, err := c.Connect(testCtx(t), cp)
	if err != nil {
		t.Fatalf("connect %s: %v", cp.ClientID, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &v5Client{Client: c, msgs: msgs}, ack
}

func (c *v5Client) subscribe(t *testing.T, topic string) {
	t.Helper()
	_, err := c.Subscribe(testCtx(t), &paho.Subscribe{
		Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}},
	})
	if err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
}

func (c *v5Client) publish(t *testing.T, topic, payload string) {
	t.Helper()
	_, err := c.Publish(testCtx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// expect waits for the next message and checks it.
func (c *v5Client) expect(t *testing.T, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no message on %s within %v", topic, waitTimeout)
	}
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return packets.NewThreadSafeConn(conn)
}

// dialWS dials MQTT over WebSocket, reusing the broker's own adapter for
// the client side (paho.mqtt.golang exercises an independent one).
func dialWS(t *testing.T, url string) net.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	_ = resp.Body.Close()
	// A Locker conn makes paho hold the lock for each whole packet, which it
	// writes in several pieces from several goroutines.
	return packets.NewThreadSafeConn(newWSConn(ws))
}
