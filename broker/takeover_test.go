package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/mqtttest"
)

// holdFanOut holds the fan-out of topic to a client until a reconnect has
// replaced that client in the server's client map. The delivery to the
// old client is then stored in its inflight map after the takeover cloned
// and cleared that map: the window in which mochi acknowledges a message
// it then loses. It also records what hooks are told about deliveries, as
// the session store keeps them: by client id and packet id.
type holdFanOut struct {
	mqtt.HookBase
	srv     *mqtt.Server
	topic   string
	armed   atomic.Bool // not while the client subscribes: mochi checks the filter the same way
	reached chan struct{}
	once    sync.Once

	mu        sync.Mutex
	announced []*mqtt.Client                 // clients told to receive topic
	inflight  map[string]map[uint16]struct{} // client id → packet ids published, not completed or dropped
}

func (h *holdFanOut) ID() string { return "test-hold-fan-out" }

func (h *holdFanOut) Provides(b byte) bool {
	switch b {
	case mqtt.OnACLCheck, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped:
		return true
	}
	return false
}

func (h *holdFanOut) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if InboundAck(pk) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if pk.TopicName == h.topic {
		h.announced = append(h.announced, cl)
	}
	if h.inflight[cl.ID] == nil {
		h.inflight[cl.ID] = make(map[uint16]struct{})
	}
	h.inflight[cl.ID][pk.PacketID] = struct{}{}
}

func (h *holdFanOut) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !InboundAck(pk) {
		h.forget(cl.ID, pk.PacketID)
	}
}

func (h *holdFanOut) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.forget(cl.ID, pk.PacketID) }

func (h *holdFanOut) forget(id string, packetID uint16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.inflight[id], packetID)
}

// recorded reports how many deliveries to id the hooks still hold.
func (h *holdFanOut) recorded(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.inflight[id])
}

// announcedTo reports whether a delivery of topic to a client with id
// other than old was announced to the hooks.
func (h *holdFanOut) announcedTo(id string, old *mqtt.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cl := range h.announced {
		if cl.ID == id && cl != old {
			return true
		}
	}
	return false
}

// OnACLCheck never decides (false leaves it to the next hook); it only
// waits.
func (h *holdFanOut) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || topic != h.topic || cl.Net.Inline || !h.armed.Load() {
		return false
	}
	h.once.Do(func() { close(h.reached) })
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if cur, ok := h.srv.Clients.Get(cl.ID); ok && cur != cl {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// msg is a received publish.
type msg struct{ topic, payload string }

// session is a subscriber's connection, whichever MQTT version.
type session struct {
	msgs       chan msg
	present    bool
	subscribe  func(t *testing.T, topic string)
	disconnect func()
}

func connectSession(t *testing.T, version byte, addr, id string, clean bool) *session {
	t.Helper()
	s := &session{msgs: make(chan msg, 16)}
	if version == 5 {
		expiry := uint32(3600)
		c := paho.NewClient(paho.ClientConfig{
			ClientID: id,
			Conn:     dialTCP(t, addr),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				s.msgs <- msg{pr.Packet.Topic, string(pr.Packet.Payload)}
				return true, nil
			}},
		})
		ack, err := c.Connect(testCtx(t), &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		if err != nil {
			t.Fatalf("connect %s: %v", id, err)
		}
		s.present = ack.SessionPresent
		s.subscribe = func(t *testing.T, topic string) {
			t.Helper()
			if _, err := c.Subscribe(testCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
				t.Fatalf("subscribe %s: %v", topic, err)
			}
		}
		s.disconnect = func() { _ = c.Disconnect(&paho.Disconnect{}) }
	} else {
		c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
			SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
			SetOrderMatters(true).SetConnectTimeout(waitTimeout).
			SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
				s.msgs <- msg{m.Topic(), string(m.Payload())}
			}))
		tok := c.Connect()
		if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		s.present = tok.(*mqtt3.ConnectToken).SessionPresent()
		s.subscribe = func(t *testing.T, topic string) {
			t.Helper()
			if tok := c.Subscribe(topic, 1, nil); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("subscribe %s: %v", topic, tok.Error())
			}
		}
		s.disconnect = func() { c.Disconnect(100) }
	}
	t.Cleanup(s.disconnect)
	return s
}

// TestLateDeliveryAfterTakeover: a persistent session is offline with one
// message queued ("early", inherited by any reconnect); a second message
// ("late") is acknowledged to its publisher, and its fan-out reaches the
// old client only after the reconnect took the session over. The
// reconnected client must get both (QoS 1: at least once; here exactly
// once, as the inherited one is not handed over a second time). A clean
// start discards the session, so nothing is handed to it.
func TestLateDeliveryAfterTakeover(t *testing.T) {
	for _, version := range []byte{5, 4} {
		for _, resume := range []bool{true, false} {
			name := fmt.Sprintf("v%d resume=%v", version, resume)
			if version == 4 {
				name = fmt.Sprintf("v3.1.1 resume=%v", resume)
			}
			t.Run(name, func(t *testing.T) { testLateDelivery(t, version, resume) })
		}
	}
}

func testLateDelivery(t *testing.T, version byte, resume bool) {
	hold := &holdFanOut{topic: "late/x", reached: make(chan struct{}), inflight: make(map[string]map[uint16]struct{})}
	b, err := New(Options{TCPAddr: "127.0.0.1:0", SessionDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)},
		hold, new(mqtttest.AllowAll))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	hold.srv = b.Server()
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	addr := b.Addrs().TCP
	const id = "keeper"

	// A 3.1.1 session outlives its connection only without clean session;
	// a v5 one by its expiry interval.
	sub := connectSession(t, version, addr, id, version == 5)
	sub.subscribe(t, "early/x")
	sub.subscribe(t, "late/x")
	sub.disconnect()
	old, ok := b.Server().Clients.Get(id)
	if !ok {
		t.Fatal("session not kept")
	}
	waitFor(t, "the old connection to close", old.Closed)

	pub, _ := connectV5(t, dialTCP(t, addr), &paho.Connect{ClientID: "pub", CleanStart: true})
	pub.publish(t, "early/x", "early")
	waitFor(t, "early to be queued", func() bool { return old.State.Inflight.Len() == 1 })
	hold.armed.Store(true)
	pub.publish(t, "late/x", "late") // acknowledged; its fan-out waits for the takeover
	select {
	case <-hold.reached:
	case <-time.After(waitTimeout):
		t.Fatal("fan-out of late/x never reached the old client")
	}

	again := connectSession(t, version, addr, id, !resume)
	if again.present != resume {
		t.Fatalf("session present = %v, want %v", again.present, resume)
	}
	h := b.takeovers
	if !resume {
		waitFor(t, "the late delivery to be dropped", func() bool { return h.dropped.Load() == 1 })
		waitFor(t, "the old client's inflight map to empty", func() bool { return old.State.Inflight.Len() == 0 })
		// The fence is the first thing the clean session gets.
		again.subscribe(t, "fence/x")
		pub.publish(t, "fence/x", "fence")
		expectMsgs(t, again.msgs, msg{"fence/x", "fence"})
		if n := h.handed.Load(); n != 0 {
			t.Fatalf("%d deliveries handed to a clean session", n)
		}
		waitFor(t, "the hooks' records to empty", func() bool { return hold.recorded(id) == 0 })
		return
	}
	expectMsgs(t, again.msgs, msg{"early/x", "early"}, msg{"late/x", "late"})
	if n, d := h.handed.Load(), h.dropped.Load(); n != 1 || d != 0 {
		t.Fatalf("handed %d, dropped %d; want 1 and 0 (early was inherited)", n, d)
	}
	waitFor(t, "the old client's inflight map to empty", func() bool { return old.State.Inflight.Len() == 0 })
	// The session store and hooks.Delivery learn of the new delivery.
	if !hold.announcedTo(id, old) {
		t.Fatal("the delivery to the successor was not passed to the other hooks' OnQosPublish")
	}
	// Both were acknowledged: no record of either (under the old or the new
	// packet id) is left behind for the session store to restore.
	waitFor(t, "the hooks' records to empty", func() bool { return hold.recorded(id) == 0 })
}

// expectMsgs waits for want, in any order; anything else fails.
func expectMsgs(t *testing.T, got <-chan msg, want ...msg) {
	t.Helper()
	missing := make(map[msg]bool, len(want))
	for _, m := range want {
		missing[m] = true
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	for len(missing) > 0 {
		select {
		case m := <-got:
			if !missing[m] {
				t.Fatalf("got %s %q, want one of %v", m.topic, m.payload, missing)
			}
			delete(missing, m)
		case <-ctx.Done():
			t.Fatalf("never got %v", missing)
		}
	}
}
