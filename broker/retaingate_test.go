package broker

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/mqtttest"
)

// retainedSnapshot subscribes c to filter and returns the retained
// messages the SUBSCRIBE brought, by topic. A second SUBSCRIBE, to a $SYS
// topic filter cannot match, ends the snapshot: mochi processes a client's
// packets in order and queues the retained messages of each SUBSCRIBE
// before reading the next, so the $SYS message arrives after them all.
func (c *v5Client) retainedSnapshot(t *testing.T, filter string) map[string]string {
	t.Helper()
	c.subscribe(t, filter)
	c.subscribe(t, "$SYS/broker/version")
	got := map[string]string{}
	deadline := time.After(waitTimeout)
	for {
		select {
		case m := <-c.msgs:
			if m.Topic == "$SYS/broker/version" {
				return got
			}
			if m.Retain {
				got[m.Topic] = string(m.Payload)
			}
		case <-deadline:
			t.Fatalf("no end of the retained messages for %s within %v", filter, waitTimeout)
		}
	}
}

// scanner is a client that subscribes to wildcard filters over and over,
// each SUBSCRIBE making mochi scan the retained index, and discards what
// it receives.
func scanner(t *testing.T, addr, id string) *paho.Client {
	t.Helper()
	c := paho.NewClient(paho.ClientConfig{
		Conn: dialTCP(t, addr),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(paho.PublishReceived) (bool, error) { return true, nil },
		},
	})
	if _, err := c.Connect(testCtx(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// TestRetainGateRace runs every kind of retained write mochi has (client
// publishes setting and clearing, inline publishes as presence makes them,
// immediate wills, $SYS) against wildcard SUBSCRIBEs scanning the same
// nodes. Under -race this fails without the gate; the retained state left
// behind must be exactly what the writers last wrote.
func TestRetainGateRace(t *testing.T) {
	b := startBroker(t, Options{})
	addr := b.Addrs().TCP
	const rounds = 60
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- err
			}
		}()
	}

	for i := range 2 {
		c := scanner(t, addr, fmt.Sprintf("scanner-%d", i))
		run(func() error {
			for range rounds {
				_, err := c.Subscribe(testCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
					{Topic: "#", QoS: 1}, {Topic: "+/+", QoS: 0}, {Topic: "$SYS/#", QoS: 0}, {Topic: "a/+", QoS: 1},
				}})
				if err != nil {
					return fmt.Errorf("scanner subscribe: %w", err)
				}
			}
			return nil
		})
	}
	pub, _ := connectV5(t, dialTCP(t, addr), &paho.Connect{ClientID: "retainer", CleanStart: true})
	run(func() error {
		for r := range rounds {
			topic := "a/" + strconv.Itoa(r%10)
			for _, payload := range []string{"set", ""} { // set, then clear
				if r >= rounds-5 && payload == "" {
					continue // the last five stay set
				}
				if _, err := pub.Publish(testCtx(t), &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)}); err != nil {
					return fmt.Errorf("retained publish %s: %w", topic, err)
				}
			}
		}
		return nil
	})
	run(func() error {
		for r := range rounds {
			if err := b.Server().Publish("presence/u"+strconv.Itoa(r%5), []byte("online"), true, 1); err != nil {
				return fmt.Errorf("inline retained publish: %w", err)
			}
		}
		return nil
	})
	run(func() error {
		for range rounds / 4 {
			b.sys.publish()
		}
		return nil
	})
	const wills = 5
	for i := range wills {
		// Connected up front (t.Fatal must not run on other goroutines).
		conn := dialTCP(t, addr)
		connectV5(t, conn, &paho.Connect{ClientID: "will-" + strconv.Itoa(i), CleanStart: true,
			WillMessage: &paho.WillMessage{Topic: "wills/" + strconv.Itoa(i), Payload: []byte("gone"), QoS: 1, Retain: true}})
		run(func() error { return conn.Close() }) // no DISCONNECT: mochi sends the will
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	check, _ := connectV5(t, dialTCP(t, addr), &paho.Connect{ClientID: "check", CleanStart: true})
	got := check.retainedSnapshot(t, "a/+")
	want := map[string]string{}
	for r := rounds - 5; r < rounds; r++ {
		want["a/"+strconv.Itoa(r%10)] = "set"
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("retained under a/+ = %v, want %v", got, want)
	}
	waitFor(t, "every will retained", func() bool {
		for i := range wills {
			if _, ok := b.Server().Topics.Retained.Get("wills/" + strconv.Itoa(i)); !ok {
				return false
			}
		}
		return true
	})
}

func TestScans(t *testing.T) {
	tests := []struct {
		sub  packets.Subscription
		want bool
	}{
		{packets.Subscription{Filter: "#"}, true},
		{packets.Subscription{Filter: "+/x"}, true},
		{packets.Subscription{Filter: "a/+/b"}, true},
		{packets.Subscription{Filter: "$SYS/#"}, true},
		{packets.Subscription{Filter: "a/b"}, false},                   // a map lookup under its lock
		{packets.Subscription{Filter: "$share/g/#"}, false},            // no retained messages for shared subscriptions
		{packets.Subscription{Filter: "#", RetainHandling: 2}, false},  // none asked for
		{packets.Subscription{Filter: "a/#", RetainHandling: 1}, true}, // unless it existed, which only mochi knows
	}
	for _, tc := range tests {
		if got := scans(tc.sub); got != tc.want {
			t.Errorf("scans(%+v) = %v, want %v", tc.sub, got, tc.want)
		}
	}
}

// ignoreTopic consumes every publish on one topic, as the chat hook
// consumes the requests it handles.
type ignoreTopic struct {
	mqtt.HookBase
	topic string
}

func (h *ignoreTopic) ID() string           { return "ignore-" + h.topic }
func (h *ignoreTopic) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *ignoreTopic) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName == h.topic {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// TestRetainGateAfterConsumedPublish: a retained publish that a hook
// consumes is never stored, so the gate must not have been taken for it.
// A leaked lock would hang the next retained publish and every wildcard
// SUBSCRIBE.
func TestRetainGateAfterConsumedPublish(t *testing.T) {
	b, err := New(Options{TCPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, new(mqtttest.AllowAll))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// Added after New like the app's hooks, so before the gate.
	if err := b.Server().AddHook(&ignoreTopic{topic: "consumed/x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	c, _ := connectV5(t, dialTCP(t, b.Addrs().TCP), &paho.Connect{ClientID: "c", CleanStart: true})
	for _, topic := range []string{"consumed/x", "kept/x"} {
		if _, err := c.Publish(testCtx(t), &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("v")}); err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
	}
	if got := c.retainedSnapshot(t, "+/x"); fmt.Sprint(got) != fmt.Sprint(map[string]string{"kept/x": "v"}) {
		t.Fatalf("retained under +/x = %v, want only kept/x", got)
	}
}

// TestDelayedRetainedWill: mochi stores a delayed will from its event loop
// with no hook around it, so the gate stores it instead, once mochi has
// routed it.
func TestDelayedRetainedWill(t *testing.T) {
	b := startBroker(t, Options{})
	addr := b.Addrs().TCP
	live, _ := connectV5(t, dialTCP(t, addr), &paho.Connect{ClientID: "live", CleanStart: true})
	live.subscribe(t, "wills/#")

	expiry, delay := uint32(3600), uint32(1)
	conn := dialTCP(t, addr)
	connectV5(t, conn, &paho.Connect{
		ClientID: "sleeper", CleanStart: true,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: "wills/sleeper", Payload: []byte("gone"), QoS: 1, Retain: true},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay},
	})
	_ = conn.Close()
	live.expect(t, "wills/sleeper", "gone") // after the delay, routed

	waitFor(t, "the delayed will retained", func() bool {
		_, ok := b.Server().Topics.Retained.Get("wills/sleeper")
		return ok
	})
	late, _ := connectV5(t, dialTCP(t, addr), &paho.Connect{ClientID: "late", CleanStart: true})
	if got := late.retainedSnapshot(t, "wills/+"); got["wills/sleeper"] != "gone" {
		t.Fatalf("retained under wills/+ = %v, want the will", got)
	}
}

// TestSysTopics: $SYS is published by the broker in mochi's place, as
// retained messages a wildcard subscriber reads and then live each second,
// without counting itself as received traffic.
func TestSysTopics(t *testing.T) {
	b := startBroker(t, Options{})
	c, _ := connectV5(t, dialTCP(t, b.Addrs().TCP), &paho.Connect{ClientID: "sys", CleanStart: true})
	c.subscribe(t, "$SYS/broker/+")
	got := map[string]string{}
	for got["$SYS/broker/version"] == "" || got["$SYS/broker/uptime"] == "" {
		select {
		case m := <-c.msgs:
			if m.Retain {
				got[m.Topic] = string(m.Payload)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("retained $SYS/broker/+ = %v, want the version and uptime", got)
		}
	}
	if got["$SYS/broker/version"] != mqtt.Version {
		t.Fatalf("$SYS/broker/version = %q, want %q", got["$SYS/broker/version"], mqtt.Version)
	}
	received := atomic.LoadInt64(&b.Server().Info.MessagesReceived)
	// Two live rounds: the retained ones were from before the SUBSCRIBE.
	for round := 0; round < 2; {
		select {
		case m := <-c.msgs:
			if m.Topic == "$SYS/broker/uptime" && !m.Retain {
				round++
			}
		case <-time.After(waitTimeout):
			t.Fatal("no live $SYS update")
		}
	}
	if now := atomic.LoadInt64(&b.Server().Info.MessagesReceived); now != received {
		t.Fatalf("messages received went from %d to %d with no client publishing", received, now)
	}
}
