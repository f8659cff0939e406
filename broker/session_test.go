package broker

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestSessionSurvivesRestart checks that the Pebble hook restores a
// persistent session, including its subscription, across a broker restart.
func TestSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	expiry := uint32(3600)
	persistent := func() *paho.Connect {
		return &paho.Connect{
			ClientID:   "phone-1",
			CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		}
	}

	b1 := startBroker(t, Options{SessionDir: dir})
	c, ack := connectV5(t, dialTCP(t, b1.Addrs().TCP), persistent())
	if ack.SessionPresent {
		t.Fatal("fresh session reported as present")
	}
	c.subscribe(t, "chat/room")
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	// Close waits for the client to be detached and flushes the store, so
	// no polling is needed before reopening the directory.
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := startBroker(t, Options{SessionDir: dir})
	c, ack = connectV5(t, dialTCP(t, b2.Addrs().TCP), persistent())
	if !ack.SessionPresent {
		t.Fatal("session not restored after restart")
	}

	pub, _ := connectV5(t, dialTCP(t, b2.Addrs().TCP), &paho.Connect{ClientID: "publisher", CleanStart: true})
	pub.publish(t, "chat/room", "after restart")
	c.expect(t, "chat/room", "after restart")
}
