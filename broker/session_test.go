package broker

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
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

// TestOfflineMessageSurvivesRestart checks that QoS 1 messages queued for
// an offline persistent session are still written to the session store
// (sessionStore only skips sessions that end with their connection).
func TestOfflineMessageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	expiry := uint32(3600)
	persistent := &paho.Connect{ClientID: "keeper", Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}

	b1 := startBroker(t, Options{SessionDir: dir})
	c, _ := connectV5(t, dialTCP(t, b1.Addrs().TCP), persistent)
	c.subscribe(t, "room/1")
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub, _ := connectV5(t, dialTCP(t, b1.Addrs().TCP), &paho.Connect{ClientID: "pub", CleanStart: true})
	pub.publish(t, "room/1", "while you were away")
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := startBroker(t, Options{SessionDir: dir})
	c, ack := connectV5(t, dialTCP(t, b2.Addrs().TCP), persistent)
	if !ack.SessionPresent {
		t.Fatal("session not restored")
	}
	c.expect(t, "room/1", "while you were away")
}

func TestEphemeral(t *testing.T) {
	tests := []struct {
		name    string
		version byte
		clean   bool
		expiry  uint32
		want    bool
	}{
		{"v5 expiry 0", 5, true, 0, true},
		{"v5 expiry 0 without clean start", 5, false, 0, true},
		{"v5 expiry 1h", 5, true, 3600, false},
		{"3.1.1 clean session", 4, true, 0, true},
		{"3.1.1 persistent session", 4, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cl mqtt.Client
			cl.Properties.ProtocolVersion = tt.version
			cl.Properties.Clean = tt.clean
			cl.Properties.Props.SessionExpiryInterval = tt.expiry
			if got := ephemeral(&cl); got != tt.want {
				t.Fatalf("ephemeral = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPublishDuringCloseDoesNotPanic: the node goes on publishing while
// the broker closes (a receipts flush on its timer); the session store,
// closed with the broker, must ignore writes that come during or after its
// close instead of racing pebble's Close (a panic: "pebble: closed").
func TestPublishDuringCloseDoesNotPanic(t *testing.T) {
	expiry := uint32(3600)
	b := startBroker(t, Options{SessionDir: t.TempDir()})
	c, _ := connectV5(t, dialTCP(t, b.Addrs().TCP), &paho.Connect{
		ClientID: "phone-1", Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	c.subscribe(t, "chat/room")
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	// Every QoS 1 message for the offline persistent session is a write to
	// the session store.
	stop, done := make(chan struct{}), make(chan struct{})
	published := make(chan struct{}, 1)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.Server().Publish("chat/room", []byte("late"), false, 1)
			select {
			case published <- struct{}{}:
			default:
			}
		}
	}()
	<-published
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	<-published // at least one more after the close
	close(stop)
	<-done
}
