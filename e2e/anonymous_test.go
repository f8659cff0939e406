package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqchat/mqchat/internal/config"
)

// Anonymous mode gives generic MQTT tools and devices a plain broker
// outside the chat namespace: these tests hold chatd to what a bare mochi
// broker does there, with paho.golang (MQTT 5) and paho.mqtt.golang
// (3.1.1), while users/ and presence/ never reach an anonymous client.

func anonServer(t *testing.T) *server {
	t.Helper()
	return startServer(t, func(c *config.Config) { c.Auth.AllowAnonymous = true })
}

// inChat reports whether topic lies in the chat namespace.
func inChat(topic string) bool {
	return strings.HasPrefix(topic, "users/") || strings.HasPrefix(topic, "presence/")
}

// endOfRetained is a topic no wildcard at the first level matches ($ topics
// are excluded from those), so its retained message, asked for with a
// second SUBSCRIBE, arrives after every retained message of the first:
// mochi handles a client's packets in order and queues each SUBSCRIBE's
// retained messages before reading the next packet.
const endOfRetained = "$SYS/broker/version"

// anonClient is what the tests need of an anonymous client of either
// protocol version.
type anonClient interface {
	sub(t *testing.T, filter string) byte
	pub(t *testing.T, topic string, payload []byte, retain bool)
	mailbox() mailbox
}

type anon5 struct{ *v5 }

func (c anon5) sub(t *testing.T, filter string) byte { return c.subscribe(t, filter)[0] }
func (c anon5) mailbox() mailbox                     { return c.box }
func (c anon5) pub(t *testing.T, topic string, payload []byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: payload})
	if err != nil || resp == nil || resp.ReasonCode != 0 {
		t.Fatalf("publish %s: %v (%+v)", topic, err, resp)
	}
}

type anon3 struct{ *v3 }

func (c anon3) sub(t *testing.T, filter string) byte { return c.subscribe(t, filter) }
func (c anon3) mailbox() mailbox                     { return c.box }
func (c anon3) pub(t *testing.T, topic string, payload []byte, retain bool) {
	t.Helper()
	tok := c.c.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func dialAnon3(t *testing.T, s *server, clientID string) anon3 {
	t.Helper()
	c, err := connectV3("tcp://"+s.addrs.MQTT, "", "", clientID)
	if err != nil {
		t.Fatalf("anonymous 3.1.1 connect %s: %v", clientID, err)
	}
	t.Cleanup(func() { c.c.Disconnect(100) })
	return anon3{c}
}

// bothVersions runs f once with MQTT 5 clients and once with 3.1.1
// clients made by dial.
func bothVersions(t *testing.T, s *server, f func(t *testing.T, dial func(id string) anonClient)) {
	t.Run("v5", func(t *testing.T) {
		f(t, func(id string) anonClient { return anon5{dialAnonV5(t, s, "v5-"+id)} })
	})
	t.Run("v3.1.1", func(t *testing.T) {
		f(t, func(id string) anonClient { return dialAnon3(t, s, "v3-"+id) })
	})
}

// retainedSnapshot subscribes c to filter and returns, by topic, the
// retained messages the SUBSCRIBE brought.
func retainedSnapshot(t *testing.T, c anonClient, filter string) map[string]string {
	t.Helper()
	if rc := c.sub(t, filter); rc > 2 {
		t.Fatalf("SUBACK for %s = 0x%02x", filter, rc)
	}
	c.sub(t, endOfRetained)
	got := map[string]string{}
	for _, r := range collectUntil(t, c.mailbox(), endOfRetained) {
		if r.Retain && r.Topic != endOfRetained {
			got[r.Topic] = string(r.Payload)
		}
	}
	return got
}

// TestAnonymousWildcardsStayOutOfChat: anonymous # and leading-wildcard
// subscribers, MQTT 5 and 3.1.1, see the plain topics and retained
// messages of a busy node and nothing of users/ or presence/, neither live
// nor retained, while users chat, devices come and go (every change a
// retained presence update) and anonymous clients set and clear retained
// messages. Under -race it is also the race test of wildcard scans against
// retained writes.
func TestAnonymousWildcardsStayOutOfChat(t *testing.T) {
	s := anonServer(t)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	b := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	if rc := b.subscribe(t, "users/"+bob.ID+"/inbox"); rc[0] != 1 {
		t.Fatalf("bob SUBACK 0x%02x", rc[0])
	}
	a.send(t, bob.ID, "first", "hi") // a chat, so they may see each other's presence
	b.box.next(t, "bob's first message", onTopic("users/"+bob.ID+"/inbox"))
	accept(t, s, bob, directChat(alice.ID, bob.ID))
	if rc := b.subscribe(t, "presence/"+alice.ID); rc[0] != 1 {
		t.Fatalf("bob SUBACK for alice's presence 0x%02x", rc[0])
	}
	if p := nextPresence(t, b.box, alice.ID); p.Status != "online" {
		t.Fatalf("alice's retained presence %+v, want online", p)
	}

	watch5 := anon5{dialAnonV5(t, s, "watch-v5")}
	watch3 := dialAnon3(t, s, "watch-v3")
	for _, w := range []anonClient{watch5, watch3} {
		if rc := w.sub(t, "#"); rc != 1 {
			t.Fatalf("anonymous SUBACK for # = 0x%02x, want 1", rc)
		}
	}

	const rounds = 40
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- err
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// Chat traffic into bob's inbox and events.
	run(func() error {
		for i := range rounds {
			if _, err := a.c.Publish(ctx, &paho.Publish{Topic: "users/" + alice.ID + "/send", QoS: 1,
				Payload: envelope(bob.ID, "busy-"+strconv.Itoa(i), "hello")}); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		return nil
	})
	// Presence churn: each connect and disconnect of a second device
	// publishes alice's retained aggregate.
	run(func() error {
		for i := range rounds / 4 {
			conn, err := net.Dial("tcp", s.addrs.MQTT)
			if err != nil {
				return err
			}
			c, _, err := connectV5(conn, alice.ID, alice.Token, alice.ID+"/churn"+strconv.Itoa(i), nil)
			if err != nil {
				return fmt.Errorf("churn connect: %w", err)
			}
			if err := c.c.Disconnect(&paho.Disconnect{}); err != nil {
				return fmt.Errorf("churn disconnect: %w", err)
			}
		}
		return nil
	})
	// Anonymous retained writes: set and clear; the last ten stay set.
	setter := dialAnonV5(t, s, "setter")
	run(func() error {
		for i := range rounds {
			topic := "plain/r/" + strconv.Itoa(i)
			for _, payload := range []string{"v", ""} {
				if payload == "" && i >= rounds-10 {
					continue
				}
				if _, err := setter.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)}); err != nil {
					return fmt.Errorf("retained publish: %w", err)
				}
			}
		}
		return nil
	})
	// Wildcard SUBSCRIBEs scanning the retained tree, presence/ included.
	for i := range 2 {
		sc := dialAnonV5(t, s, "scanner-"+strconv.Itoa(i))
		run(func() error {
			for range rounds / 2 {
				ack, err := sc.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
					{Topic: "#", QoS: 1}, {Topic: "+/+", QoS: 1}, {Topic: "+/" + alice.ID, QoS: 0},
				}})
				if err != nil {
					return fmt.Errorf("scanner subscribe: %w", err)
				}
				for _, rc := range ack.Reasons {
					if rc > 2 {
						return fmt.Errorf("scanner SUBACK %v", ack.Reasons)
					}
				}
			}
			return nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// What the # watchers received up to a marker sent after everything
	// above: the plain traffic, and nothing of the chat namespace.
	setter.publish(t, "plain/marker", []byte("marker"))
	for name, box := range map[string]mailbox{"v5": watch5.box, "v3.1.1": watch3.box} {
		plain := 0
		for _, r := range collectUntil(t, box, "plain/marker") {
			if inChat(r.Topic) {
				t.Errorf("anonymous %s # subscriber received %s %s", name, r.Topic, r.Payload)
			}
			if strings.HasPrefix(r.Topic, "plain/r/") {
				plain++
			}
		}
		if plain < rounds {
			t.Errorf("anonymous %s # subscriber received %d plain/r/ messages, want at least %d", name, plain, rounds)
		}
	}
	// Retained at SUBSCRIBE: the plain ones left set, not alice's presence
	// (which exists: bob, who may see it, gets it).
	want := map[string]string{}
	for i := rounds - 10; i < rounds; i++ {
		want["plain/r/"+strconv.Itoa(i)] = "v"
	}
	bothVersions(t, s, func(t *testing.T, dial func(string) anonClient) {
		got := retainedSnapshot(t, dial("late"), "#")
		delete(got, "plain/marker") // not retained, but harmless either way
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("retained for # = %v, want %v", got, want)
		}
	})
	if rc := b.subscribe(t, "presence/"+alice.ID); rc[0] != 1 {
		t.Fatalf("bob resubscribe 0x%02x", rc[0])
	}
	b.box.next(t, "alice's retained presence", func(r received) bool { return r.Topic == "presence/"+alice.ID && r.Retain })

	denied := scrape(t, s)[`mqchat_mqtt_acl_denied_total{client="anonymous"}`]
	if denied < 2*rounds {
		t.Fatalf("mqchat_mqtt_acl_denied_total{client=\"anonymous\"} = %v, want at least %d (chat deliveries kept from # subscribers)", denied, 2*rounds)
	}
}

// TestAnonymousRetainedSetAndClear: set retained messages, read them back
// with #, and clear them the way generic tools do (an empty retained
// payload on each topic # brought back).
func TestAnonymousRetainedSetAndClear(t *testing.T) {
	s := anonServer(t)
	bothVersions(t, s, func(t *testing.T, dial func(string) anonClient) {
		c := dial("tool")
		prefix := "dev" + strings.ReplaceAll(t.Name(), "/", "-")
		want := map[string]string{}
		for i := range 3 {
			topic := prefix + "/" + strconv.Itoa(i) + "/state"
			want[topic] = "on" + strconv.Itoa(i)
			c.pub(t, topic, []byte(want[topic]), true)
		}
		got := retainedSnapshot(t, c, "#")
		for topic, payload := range want {
			if got[topic] != payload {
				t.Fatalf("retained for # = %v, want to include %s=%s", got, topic, payload)
			}
		}
		for topic := range got {
			if strings.HasPrefix(topic, prefix+"/") {
				c.pub(t, topic, nil, true) // clears
			}
		}
		for topic := range retainedSnapshot(t, dial("check"), "#") {
			if strings.HasPrefix(topic, prefix+"/") {
				t.Errorf("%s still retained after clearing", topic)
			}
		}
	})
}

// TestAnonymousPersistentSession: a session kept across disconnects (MQTT 5
// session expiry, 3.1.1 clean session off) subscribed with a leading
// wildcard gets what was published while it was away.
func TestAnonymousPersistentSession(t *testing.T) {
	s := anonServer(t)
	pub := anon5{dialAnonV5(t, s, "offline-pub")}

	t.Run("v5", func(t *testing.T) {
		expiry := uint32(3600)
		connect := func(clean bool) (*v5, *paho.Connack) {
			box := newMailbox()
			c := paho.NewClient(paho.ClientConfig{
				Conn: tcpConn(t, s.addrs.MQTT),
				OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
					box <- received{Topic: p.Packet.Topic, Payload: p.Packet.Payload, Retain: p.Packet.Retain}
					return true, nil
				}},
			})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			ack, err := c.Connect(ctx, &paho.Connect{ClientID: "keeper-v5", KeepAlive: 30, CleanStart: clean,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			return &v5{c: c, box: box}, ack
		}
		c, _ := connect(true)
		if rc := c.subscribe(t, "+/x"); rc[0] != 1 {
			t.Fatalf("SUBACK for +/x = 0x%02x", rc[0])
		}
		if err := c.c.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
		pub.pub(t, "q/x", []byte("while away 1"), false)
		pub.pub(t, "r/x", []byte("while away 2"), false)
		c, ack := connect(false)
		t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
		if !ack.SessionPresent {
			t.Fatal("session not present on reconnect")
		}
		expectQueued(t, c.box, map[string]string{"q/x": "while away 1", "r/x": "while away 2"})
	})

	t.Run("v3.1.1", func(t *testing.T) {
		connect := func() (paho3.Client, mailbox) {
			box := newMailbox()
			opts := paho3.NewClientOptions().AddBroker("tcp://" + s.addrs.MQTT).SetClientID("keeper-v3").
				SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
				SetOrderMatters(true).SetConnectTimeout(waitTimeout).
				SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
					box <- received{Topic: m.Topic(), Payload: m.Payload(), Retain: m.Retained()}
				})
			c := paho3.NewClient(opts)
			if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			return c, box
		}
		c, box := connect()
		if rc := (&v3{c: c, box: box}).subscribe(t, "+/x"); rc != 1 {
			t.Fatalf("SUBACK for +/x = 0x%02x", rc)
		}
		c.Disconnect(100)
		pub.pub(t, "q/x", []byte("while away 3"), false)
		pub.pub(t, "r/x", []byte("while away 4"), false)
		c, box = connect()
		t.Cleanup(func() { c.Disconnect(100) })
		expectQueued(t, box, map[string]string{"q/x": "while away 3", "r/x": "while away 4"})
	})
}

// expectQueued waits for the messages queued for an offline session, in
// any order: mochi resends a session's inflight messages from a map.
func expectQueued(t *testing.T, box mailbox, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for len(got) < len(want) {
		r := box.next(t, fmt.Sprintf("queued messages %v (have %v)", want, got), func(r received) bool { return want[r.Topic] != "" })
		got[r.Topic] = string(r.Payload)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("queued messages %v, want %v", got, want)
	}
}

// TestAnonymousOverlappingSubscriptions: mochi merges a client's matching
// subscriptions into one delivery (TopicsIndex.Subscribers keys them by
// client), so a/# and a/+ together bring one copy of a/b.
func TestAnonymousOverlappingSubscriptions(t *testing.T) {
	s := anonServer(t)
	pub := anon5{dialAnonV5(t, s, "overlap-pub")}
	bothVersions(t, s, func(t *testing.T, dial func(string) anonClient) {
		c := dial("overlap")
		for _, f := range []string{"a/#", "a/+", "+/b"} {
			if rc := c.sub(t, f); rc != 1 {
				t.Fatalf("SUBACK for %s = 0x%02x", f, rc)
			}
		}
		pub.pub(t, "a/b", []byte("one"), false)
		pub.pub(t, "a/marker", []byte("end"), false)
		copies := 0
		for _, r := range collectUntil(t, c.mailbox(), "a/marker") {
			if r.Topic == "a/b" {
				copies++
			}
		}
		if copies != 1 {
			t.Fatalf("received %d copies of a/b, want 1", copies)
		}
	})
}

// TestAnonymousSys: $SYS is readable anonymously, with wildcards, as on a
// bare mochi broker; users, who live in the chat namespace, may not.
func TestAnonymousSys(t *testing.T) {
	s := anonServer(t)
	bothVersions(t, s, func(t *testing.T, dial func(string) anonClient) {
		c := dial("sys")
		if rc := c.sub(t, "$SYS/#"); rc > 2 {
			t.Fatalf("SUBACK for $SYS/# = 0x%02x", rc)
		}
		for _, topic := range []string{"$SYS/broker/version", "$SYS/broker/clients/connected"} {
			if got := c.mailbox().next(t, topic, onTopic(topic)); len(got.Payload) == 0 {
				t.Fatalf("%s is empty", topic)
			}
		}
		// Live updates follow, about every second.
		c.mailbox().next(t, "a live $SYS update", func(r received) bool { return r.Topic == "$SYS/broker/uptime" && !r.Retain })
	})
	alice := s.register(t, "alice")
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	if rc := a.subscribe(t, "$SYS/#"); rc[0] != 0x87 {
		t.Fatalf("user SUBACK for $SYS/# = 0x%02x, want 0x87", rc[0])
	}
}
