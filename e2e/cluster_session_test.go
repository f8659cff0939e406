package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// persistentV5 connects a v5 client that resumes its session (clean start
// off, a session expiry), recording a DISCONNECT the server sends it.
func persistentV5(t *testing.T, addr string, a account, device string, disconnected chan<- byte) (*v5, *paho.Connack) {
	t.Helper()
	box := newMailbox()
	c := paho.NewClient(paho.ClientConfig{
		Conn: tcpConn(t, addr),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			box <- received{Topic: p.Packet.Topic, Payload: p.Packet.Payload, Retain: p.Packet.Retain}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { disconnected <- d.ReasonCode },
	})
	expiry := uint32(300)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{
		ClientID: a.ID + "/" + device, Username: a.ID, UsernameFlag: true, Password: []byte(a.Token), PasswordFlag: true,
		KeepAlive: 30, CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	if err != nil {
		t.Fatalf("connect %s/%s to %s: %v", a.Username, device, addr, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	return &v5{c: c, box: box, acct: a}, ack
}

// A device that resumes its session on another node finds it there: the
// old connection is closed with 0x8E, the CONNACK says session present, and
// the subscriptions it made on the first node deliver on the second without
// a new SUBSCRIBE.
func TestClusterSessionFollowsDevice(t *testing.T) {
	const n1, n2 = 0, 1
	c := startCluster(t, 2)
	alice := c.server(n1).register(t, "alice")
	bob := c.server(n1).register(t, "bob")

	gone := make(chan byte, 1)
	first, ack := persistentV5(t, c.server(n1).addrs.MQTT, alice, "tablet", gone)
	if ack.SessionPresent {
		t.Fatal("first connection: session present on a new client id")
	}
	first.subscribe(t, "users/"+alice.ID+"/inbox")

	moved, ack := persistentV5(t, c.server(n2).addrs.MQTT, alice, "tablet", make(chan byte, 1))
	if !ack.SessionPresent {
		t.Fatal("the device resumed its session on n2 but the CONNACK says no session present")
	}
	select {
	case code := <-gone:
		if code != 0x8E {
			t.Fatalf("old connection closed with 0x%02X, want 0x8E (session taken over)", code)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the old connection on n1 was not closed")
	}

	sender := dialV5(t, tcpConn(t, c.server(n1).addrs.MQTT), bob, "phone")
	sender.send(t, alice.ID, "hello-moved", "to the moved tablet")
	moved.box.next(t, "inbox message on the resumed session", func(r received) bool {
		return r.Topic == "users/"+alice.ID+"/inbox" && strings.Contains(string(r.Payload), "hello-moved")
	})

	// A clean start on the other node takes nothing along.
	_, ack = cleanV5(t, c.server(n1).addrs.MQTT, alice, "tablet")
	if ack.SessionPresent {
		t.Fatal("a clean start got a session present")
	}
}

func cleanV5(t *testing.T, addr string, a account, device string) (*v5, *paho.Connack) {
	t.Helper()
	c, ack, err := connectV5(tcpConn(t, addr), a.ID, a.Token, a.ID+"/"+device, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
	return c, ack
}
