package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/mqtttest"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

type deliveredCall struct {
	uid, chat string
	seq       uint64
}

type recordingReceiver struct {
	mu    sync.Mutex
	calls []deliveredCall
	ch    chan deliveredCall
}

func newRecordingReceiver() *recordingReceiver {
	return &recordingReceiver{ch: make(chan deliveredCall, 64)}
}

func (r *recordingReceiver) Delivered(uid, chat string, seq uint64) {
	r.mu.Lock()
	r.calls = append(r.calls, deliveredCall{uid, chat, seq})
	r.mu.Unlock()
	select {
	case r.ch <- deliveredCall{uid, chat, seq}:
	default:
	}
}

func (r *recordingReceiver) all() []deliveredCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deliveredCall(nil), r.calls...)
}

func inboxPayload(t *testing.T, chatID string, seq uint64) []byte {
	t.Helper()
	raw, err := json.Marshal(chat.View(store.Message{Chat: chatID, Seq: seq, ID: 1, From: "x", Type: "text", Body: []byte(`"hi"`)}))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func fakeClient(uid, device string) *mqtt.Client {
	return &mqtt.Client{ID: uid + "/" + device, Properties: mqtt.ClientProperties{Username: []byte(uid)}}
}

func inboxPacket(t *testing.T, uid string, id uint16, chatID string, seq uint64) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   InboxTopic(uid), PacketID: id, Origin: mqtt.InlineClientId,
		Payload: inboxPayload(t, chatID, seq),
	}
}

func puback(id uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}
}

func TestParseDelivered(t *testing.T) {
	for _, tc := range []struct {
		in   string
		chat string
		seq  uint64
		ok   bool
	}{
		{`{"chat":"d:a:b","seq":17,"id":"x"}`, "d:a:b", 17, true},
		{` { "chat" : "g:1" , "seq" : 18446744073709551615 }`, "g:1", 1<<64 - 1, true},
		{"{\n\t\"chat\":\"g:1\",\r\n\"seq\":3\n,", "g:1", 3, true},
		{`{"chat":"d:a:b","seq":18446744073709551616}`, "", 0, false}, // overflow
		{`{"chat":"d:a:b","seq":0}`, "", 0, false},
		{`{"chat":"d:a:b","seq":01}`, "", 0, false},
		{`{"chat":"d:a:b","seq":1.5}`, "", 0, false},
		{`{"chat":"d:a:b","seq":1e3}`, "", 0, false},
		{`{"chat":"d:a:b","seq":-1}`, "", 0, false},
		{`{"chat":"d:a:b","seq":"1"}`, "", 0, false},
		{`{"chat":"d:a:b","seq":1`, "", 0, false}, // truncated
		{`{"chat":"d:a:b","seq":`, "", 0, false},
		{`{"chat":"d:a:b"`, "", 0, false},
		{`{"chat":"","seq":1}`, "", 0, false},
		{`{"chat":"d:\"a","seq":1}`, "", 0, false},
		{`{"seq":1,"chat":"d:a:b"}`, "", 0, false},
		{`{"type":"receipt","chat":"d:a:b","seq":1}`, "", 0, false},
		{`{"chat":"` + strings.Repeat("x", maxChatID+1) + `","seq":1}`, "", 0, false},
		{`{"chat":"d:a:b","seq":1x}`, "", 0, false},
		{``, "", 0, false},
		{`{`, "", 0, false},
		{`online`, "", 0, false},
	} {
		chatID, seq, ok := parseDelivered([]byte(tc.in))
		if chatID != tc.chat || seq != tc.seq || ok != tc.ok {
			t.Errorf("parseDelivered(%q) = %q, %d, %v; want %q, %d, %v", tc.in, chatID, seq, ok, tc.chat, tc.seq, tc.ok)
		}
	}
}

func FuzzParseDelivered(f *testing.F) {
	f.Add([]byte(`{"chat":"d:a:b","seq":17,"id":"x"}`))
	f.Add([]byte(`{"chat":"g:1","seq":99999999999999999999}`))
	f.Add([]byte(`{"type":"error"}`))
	f.Add([]byte(`{"seq":4,"from":"a","cmid":"c","body":{},"sent_at":"x","to_device":"d"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		// A device message's seq, read as an inbox message's: whatever is
		// accepted agrees with a real decoder reading the first member.
		if dseq, ok := parseDeviceDelivered(p); ok && json.Valid(p) {
			d := json.NewDecoder(bytes.NewReader(p))
			d.UseNumber()
			var toks []any
			for range 3 {
				tok, err := d.Token()
				if err != nil {
					t.Fatalf("parseDeviceDelivered(%q) accepted, decoder: %v", p, err)
				}
				toks = append(toks, tok)
			}
			if toks[0] != json.Delim('{') || toks[1] != "seq" || toks[2].(json.Number).String() != strconv.FormatUint(dseq, 10) {
				t.Fatalf("parseDeviceDelivered(%q) = %d, decoder says %v", p, dseq, toks)
			}
		}
		chatID, seq, ok := parseDelivered(p)
		if !ok {
			return
		}
		// Whatever is accepted agrees with a real decoder reading the
		// object's first two members.
		if !json.Valid(p) {
			return
		}
		d := json.NewDecoder(bytes.NewReader(p))
		d.UseNumber()
		var toks []any
		for range 5 {
			tok, err := d.Token()
			if err != nil {
				t.Fatalf("parseDelivered(%q) accepted, decoder: %v", p, err)
			}
			toks = append(toks, tok)
		}
		if toks[0] != json.Delim('{') || toks[1] != "chat" || toks[2] != chatID || toks[3] != "seq" ||
			toks[4].(json.Number).String() != strconv.FormatUint(seq, 10) {
			t.Fatalf("parseDelivered(%q) = %q %d, decoder says %v", p, chatID, seq, toks)
		}
	})
}

func TestDeliveryHookRecordsAndCompletes(t *testing.T) {
	r := newRecordingReceiver()
	h := NewDelivery(DeliveryOptions{Receiver: r, MaxInflight: 4})
	cl := fakeClient("alice", "phone")

	h.OnQosPublish(cl, inboxPacket(t, "alice", 1, "d:alice:bob", 5), 0, 0)
	h.OnQosPublish(cl, inboxPacket(t, "alice", 2, "g:team", 9), 0, 0)
	// Not inbox deliveries: another user's inbox, events, QoS 0, a QoS 2 ack
	// and the inline client itself.
	other := inboxPacket(t, "bob", 3, "d:alice:bob", 6)
	h.OnQosPublish(cl, other, 0, 0)
	ev := inboxPacket(t, "alice", 4, "d:alice:bob", 7)
	ev.TopicName = EventsTopic("alice")
	h.OnQosPublish(cl, ev, 0, 0)
	q0 := inboxPacket(t, "alice", 5, "d:alice:bob", 8)
	q0.FixedHeader.Qos = 0
	h.OnQosPublish(cl, q0, 0, 0)
	inline := &mqtt.Client{ID: mqtt.InlineClientId, Net: mqtt.ClientConnection{Inline: true}}
	h.OnQosPublish(inline, inboxPacket(t, "", 6, "d:alice:bob", 8), 0, 0)
	if n, _ := h.tracked(cl.ID); n != 2 {
		t.Fatalf("tracked %d, want 2", n)
	}

	// A PUBREL/PUBCOMP with a colliding id is not a PUBACK.
	h.OnQosComplete(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: 1})
	h.OnQosComplete(cl, puback(1))
	h.OnQosComplete(cl, puback(1)) // a second PUBACK of the same id: nothing left
	h.OnQosComplete(cl, puback(3))
	h.OnQosComplete(cl, puback(2))
	want := []deliveredCall{{"alice", "d:alice:bob", 5}, {"alice", "g:team", 9}}
	if got := r.all(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("delivered %+v, want %+v", got, want)
	}
	if n, _ := h.tracked(cl.ID); n != 0 {
		t.Fatalf("tracked %d after completion", n)
	}
}

type deviceAck struct {
	uid, device string
	seq         uint64
}

type recordingDeviceAcks struct {
	mu   sync.Mutex
	acks []deviceAck
}

func (r *recordingDeviceAcks) Acked(uid, device string, seq uint64) {
	r.mu.Lock()
	r.acks = append(r.acks, deviceAck{uid, device, seq})
	r.mu.Unlock()
}

func (r *recordingDeviceAcks) all() []deviceAck {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deviceAck(nil), r.acks...)
}

func devicePacket(topic string, id uint16, seq uint64) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic, PacketID: id, Origin: mqtt.InlineClientId,
		Payload: []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `,"from":"bob","cmid":"c","body":"x","sent_at":"2026-11-23T18:46:56.263Z","to_device":"phone"}`),
	}
}

// TestDeliveryHookDeviceInbox: a PUBACK of the client's own device inbox
// message acknowledges that device's messages; chat receipts are not
// told, and another device's inbox is not the client's.
func TestDeliveryHookDeviceInbox(t *testing.T) {
	r, acks := newRecordingReceiver(), &recordingDeviceAcks{}
	h := NewDelivery(DeliveryOptions{Receiver: r, Devices: acks})
	cl := fakeClient("alice", "phone")
	h.OnQosPublish(cl, devicePacket(DeviceInboxTopic("alice", "phone"), 1, 7), 0, 0)
	h.OnQosPublish(cl, devicePacket(DeviceInboxTopic("alice", "laptop"), 2, 8), 0, 0)
	h.OnQosPublish(cl, devicePacket(DeviceInboxTopic("bob", "phone"), 3, 9), 0, 0)
	aliased := devicePacket("", 4, 10)
	aliased.Properties.TopicAlias = 2
	h.OnQosPublish(cl, aliased, 0, 0)
	h.OnQosPublish(cl, inboxPacket(t, "alice", 5, "d:alice:bob", 3), 0, 0)
	if n, _ := h.tracked(cl.ID); n != 3 {
		t.Fatalf("tracked %d, want 3", n)
	}
	for id := uint16(1); id <= 5; id++ {
		h.OnQosComplete(cl, puback(id))
	}
	want := []deviceAck{{"alice", "phone", 7}, {"alice", "phone", 10}}
	if got := acks.all(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("device acks %+v, want %+v", got, want)
	}
	if got := r.all(); len(got) != 1 || got[0] != (deliveredCall{"alice", "d:alice:bob", 3}) {
		t.Fatalf("delivered %+v", got)
	}

	// Without a device receiver nothing about device inboxes is kept.
	h = NewDelivery(DeliveryOptions{Receiver: r})
	h.OnQosPublish(cl, devicePacket(DeviceInboxTopic("alice", "phone"), 1, 7), 0, 0)
	if n, _ := h.tracked(cl.ID); n != 0 {
		t.Fatalf("tracked %d without a device receiver", n)
	}
}

func TestParseDeviceDelivered(t *testing.T) {
	for _, tc := range []struct {
		in  string
		seq uint64
		ok  bool
	}{
		{`{"seq":4,"from":"a"}`, 4, true},
		{` { "seq" : 18446744073709551615 }`, 1<<64 - 1, true},
		{`{"seq":0,"from":"a"}`, 0, false},
		{`{"seq":01}`, 0, false},
		{`{"seq":1.5}`, 0, false},
		{`{"seq":"1"}`, 0, false},
		{`{"seq":1`, 0, false},
		{`{"chat":"d:a:b","seq":1}`, 0, false},
		{`{"from":"a","seq":1}`, 0, false},
		{`{"seq":18446744073709551616}`, 0, false},
		{``, 0, false},
	} {
		seq, ok := parseDeviceDelivered([]byte(tc.in))
		if seq != tc.seq || ok != tc.ok {
			t.Errorf("parseDeviceDelivered(%q) = %d, %v; want %d, %v", tc.in, seq, ok, tc.seq, tc.ok)
		}
	}
}

func TestDeliveryHookAliasedTopic(t *testing.T) {
	r := newRecordingReceiver()
	h := NewDelivery(DeliveryOptions{Receiver: r})
	cl := fakeClient("alice", "phone")
	pk := inboxPacket(t, "alice", 1, "d:alice:bob", 5)
	pk.TopicName, pk.Properties.TopicAlias = "", 1
	h.OnQosPublish(cl, pk, 0, 0)
	forged := inboxPacket(t, "alice", 2, "d:alice:bob", 6)
	forged.TopicName, forged.Properties.TopicAlias, forged.Origin = "", 1, "bob/phone"
	h.OnQosPublish(cl, forged, 0, 0)
	h.OnQosComplete(cl, puback(1))
	h.OnQosComplete(cl, puback(2))
	if got := r.all(); len(got) != 1 || got[0].seq != 5 {
		t.Fatalf("delivered %+v", got)
	}
}

func TestDeliveryHookBoundsAndForgets(t *testing.T) {
	r := newRecordingReceiver()
	h := NewDelivery(DeliveryOptions{Receiver: r, MaxInflight: 4})
	cl := fakeClient("alice", "phone")
	for id := uint16(1); id <= 10; id++ {
		h.OnQosPublish(cl, inboxPacket(t, "alice", id, "d:alice:bob", uint64(id)), 0, 0)
		if n, _ := h.tracked(cl.ID); n > 4 {
			t.Fatalf("%d entries past a cap of 4", n)
		}
	}
	// A resend of an id already held replaces it, never grows.
	h.OnQosPublish(cl, inboxPacket(t, "alice", 10, "d:alice:bob", 10), 0, 1)
	if n, _ := h.tracked(cl.ID); n != 4 {
		t.Fatalf("tracked %d", n)
	}
	h.OnQosDropped(cl, packets.Packet{PacketID: 10})
	h.OnQosComplete(cl, puback(10))
	if len(r.all()) != 0 {
		t.Fatalf("dropped message reported delivered: %+v", r.all())
	}

	// A kept session keeps its entries over a disconnect; a clean one does not.
	h.OnDisconnect(cl, nil, false)
	if n, ok := h.tracked(cl.ID); !ok || n != 3 {
		t.Fatalf("kept session: %d entries, known %v", n, ok)
	}
	h.OnDisconnect(cl, nil, true)
	if _, ok := h.tracked(cl.ID); ok {
		t.Fatal("clean session's entries kept")
	}

	// An idle kept session leaves nothing behind; an expired one neither.
	h.OnQosPublish(cl, inboxPacket(t, "alice", 1, "d:alice:bob", 1), 0, 0)
	h.OnQosComplete(cl, puback(1))
	h.OnDisconnect(cl, nil, false)
	if _, ok := h.tracked(cl.ID); ok {
		t.Fatal("idle kept session's entry kept")
	}
	h.OnQosPublish(cl, inboxPacket(t, "alice", 1, "d:alice:bob", 1), 0, 0)
	h.OnDisconnect(cl, nil, false)
	h.OnClientExpired(cl)
	if _, ok := h.tracked(cl.ID); ok {
		t.Fatal("expired session's entries kept")
	}
}

// TestDeliveryHookWithBroker runs the hook in a real mochi server: a
// subscribed paho client PUBACKs its inbox message and that, only that, is
// reported.
func TestDeliveryHookWithBroker(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(mqtttest.AllowAll), nil); err != nil {
		t.Fatal(err)
	}
	r := newRecordingReceiver()
	if err := srv.AddHook(NewDelivery(DeliveryOptions{Receiver: r}), nil); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", mqtttest.ServeTCP(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	c := paho.NewClient(paho.ClientConfig{
		Conn: pahopackets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			got <- p.Packet.Topic
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "alice/phone", Username: "alice", UsernameFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "users/alice/#", QoS: 1}, {Topic: "users/bob/inbox", QoS: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	_ = srv.Publish(InboxTopic("bob"), inboxPayload(t, "d:alice:bob", 1), false, 1)
	_ = srv.Publish(EventsTopic("alice"), []byte(`{"type":"receipt","chat":"d:alice:bob","user":"bob","read_seq":1}`), false, 1)
	_ = srv.Publish(InboxTopic("alice"), inboxPayload(t, "d:alice:bob", 2), false, 1)
	for range 3 {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatal("publishes not received")
		}
	}
	select {
	case d := <-r.ch:
		if d != (deliveredCall{"alice", "d:alice:bob", 2}) {
			t.Fatalf("delivered %+v", d)
		}
	case <-ctx.Done():
		t.Fatal("no delivered report")
	}
	// Only that one: the other two are not alice's inbox.
	time.Sleep(50 * time.Millisecond)
	if n := len(r.all()); n != 1 {
		t.Fatalf("%d reports: %+v", n, r.all())
	}
}
