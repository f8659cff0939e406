package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqchat/mqchat/internal/config"
)

// deviceMsg is a device message as its device sees it.
type deviceMsg struct {
	Seq        uint64          `json:"seq"`
	From       string          `json:"from"`
	FromDevice string          `json:"from_device"`
	CMID       string          `json:"cmid"`
	Body       json.RawMessage `json:"body"`
	SentAt     string          `json:"sent_at"`
	ToDevice   string          `json:"to_device"`
}

type deviceMsgSent struct {
	ToDevice struct {
		User   string `json:"user"`
		Device string `json:"device"`
	} `json:"to_device"`
	Seq       uint64 `json:"seq"`
	SentAt    string `json:"sent_at"`
	Duplicate bool   `json:"duplicate"`
}

func deviceInbox(uid, device string) string { return "users/" + uid + "/devices/" + device + "/inbox" }

func deviceEnvelope(to, device, cmid string, body any) []byte {
	raw, _ := json.Marshal(map[string]any{"to_device": map[string]string{"user": to, "device": device}, "cmid": cmid, "body": body})
	return raw
}

func (r received) device(t *testing.T) deviceMsg {
	t.Helper()
	var m deviceMsg
	if err := json.Unmarshal(r.Payload, &m); err != nil {
		t.Fatalf("device message %q: %v", r.Payload, err)
	}
	return m
}

// sendDevice posts a device message over REST and returns the answer.
func (s *server) sendDevice(t *testing.T, from account, to, device, cmid string, body any) (int, deviceMsgSent) {
	t.Helper()
	var out deviceMsgSent
	st := s.call(t, "POST", "/v1/device-messages", from.Token,
		map[string]any{"to_device": map[string]string{"user": to, "device": device}, "cmid": cmid, "body": body}, nil, &out)
	return st, out
}

func (s *server) storedDeviceMessages(t *testing.T, uid, device string) int {
	t.Helper()
	msgs, err := s.app.Store().PendingDeviceMessages(context.Background(), uid, device, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

// TestDeviceMessagesOfflineDevice: five device messages sent while the
// device is offline arrive on its reconnect and subscribe, once each and
// in order; its PUBACKs delete them from the store, and the next
// reconnect delivers nothing again.
func TestDeviceMessagesOfflineDevice(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	phone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	if rc := phone.subscribe(t, deviceInbox(bob.ID, "phone")); rc[0] != 1 {
		t.Fatalf("subscribe own device inbox: 0x%02x", rc[0])
	}
	if err := phone.c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}

	laptop := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "laptop")
	for i := range 5 {
		rc, err := laptop.publish(t, "users/"+alice.ID+"/send", deviceEnvelope(bob.ID, "phone", fmt.Sprint("k", i), map[string]any{"n": i}))
		if err != nil || rc != 0 {
			t.Fatalf("device send %d: 0x%02x, %v", i, rc, err)
		}
	}
	if n := s.storedDeviceMessages(t, bob.ID, "phone"); n != 5 {
		t.Fatalf("%d stored, want 5", n)
	}

	phone = dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))
	for i := range 5 {
		m := phone.box.next(t, fmt.Sprint("device message ", i+1), onTopic(deviceInbox(bob.ID, "phone"))).device(t)
		if m.Seq != uint64(i+1) || m.From != alice.ID || m.FromDevice != "laptop" || m.CMID != fmt.Sprint("k", i) ||
			string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) || m.ToDevice != "phone" || m.SentAt == "" {
			t.Fatalf("message %d: %+v", i+1, m)
		}
	}
	eventually(t, "the PUBACKs delete the messages", func() error {
		if n := s.storedDeviceMessages(t, bob.ID, "phone"); n != 0 {
			return fmt.Errorf("%d still stored", n)
		}
		return nil
	})
	// Exactly once: the next device message is the only one that comes.
	if st, _ := s.sendDevice(t, alice, bob.ID, "phone", "marker1", "m"); st != http.StatusCreated {
		t.Fatalf("REST send: %d", st)
	}
	if m := phone.box.next(t, "the marker", onTopic(deviceInbox(bob.ID, "phone"))).device(t); m.Seq != 6 || m.CMID != "marker1" {
		t.Fatalf("after the replay: %+v, want the marker (seq 6)", m)
	}
	eventually(t, "the marker acknowledged", func() error {
		if n := s.storedDeviceMessages(t, bob.ID, "phone"); n != 0 {
			return fmt.Errorf("%d still stored", n)
		}
		return nil
	})
	if err := phone.c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}

	phone = dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))
	if st, _ := s.sendDevice(t, alice, bob.ID, "phone", "marker2", "m"); st != http.StatusCreated {
		t.Fatalf("REST send: %d", st)
	}
	if m := phone.box.next(t, "the second marker", onTopic(deviceInbox(bob.ID, "phone"))).device(t); m.Seq != 7 || m.CMID != "marker2" {
		t.Fatalf("after reconnecting: %+v, want only the new marker (seq 7)", m)
	}
}

// TestDeviceInboxACL: only the client {uid}/{device} reads its device
// inbox: the user's other devices and other users are refused 0x87, and a
// users/{me}/# subscription carries only the device's own.
func TestDeviceInboxACL(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	laptop := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "laptop")
	mallory := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	for _, tc := range []struct {
		who    *v5
		filter string
	}{
		{laptop, deviceInbox(bob.ID, "phone")},
		{laptop, "users/" + bob.ID + "/devices/+/inbox"},
		{laptop, "users/" + bob.ID + "/devices/#"},
		{mallory, deviceInbox(bob.ID, "phone")},
		{mallory, deviceInbox(bob.ID, "laptop")},
	} {
		if rc := tc.who.subscribe(t, tc.filter); rc[0] != 0x87 {
			t.Errorf("%s subscribing to %s: 0x%02x, want 0x87", tc.who.acct.Username, tc.filter, rc[0])
		}
	}
	if rc := laptop.subscribe(t, "users/"+bob.ID+"/#"); rc[0] != 1 {
		t.Fatalf("users/{me}/#: 0x%02x", rc[0])
	}
	if st, _ := s.sendDevice(t, alice, bob.ID, "phone", "for-phone", "secret"); st != http.StatusCreated {
		t.Fatalf("send to phone: %d", st)
	}
	if st, _ := s.sendDevice(t, alice, bob.ID, "laptop", "for-laptop", "hi"); st != http.StatusCreated {
		t.Fatalf("send to laptop: %d", st)
	}
	got := laptop.box.next(t, "the laptop's own device message", func(r received) bool {
		return r.Topic != "users/"+bob.ID+"/events"
	})
	if got.Topic != deviceInbox(bob.ID, "laptop") || got.device(t).CMID != "for-laptop" {
		t.Fatalf("laptop received %s %s, want only its own device message", got.Topic, got.Payload)
	}
}

// TestDeviceMessageDedupeAndQuota: a retried cmid is stored once and
// answered as a duplicate; past limits.device_messages_pending a send is
// refused quota_exceeded over MQTT and REST alike.
func TestDeviceMessageDedupeAndQuota(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Limits.DeviceMessagesPending = 3 })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	laptop := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "laptop")
	laptop.subscribe(t, "users/"+alice.ID+"/events")
	send := "users/" + alice.ID + "/send"
	for range 2 {
		if rc, err := laptop.publish(t, send, deviceEnvelope(bob.ID, "phone", "k1", "one")); err != nil || rc != 0 {
			t.Fatalf("send k1: 0x%02x, %v", rc, err)
		}
	}
	if n := s.storedDeviceMessages(t, bob.ID, "phone"); n != 1 {
		t.Fatalf("%d stored after a retry, want 1", n)
	}
	st, dup := s.sendDevice(t, alice, bob.ID, "phone", "k1", "one")
	if st != http.StatusOK || !dup.Duplicate || dup.Seq != 1 || dup.ToDevice.User != bob.ID || dup.ToDevice.Device != "phone" {
		t.Fatalf("REST retry of k1: %d %+v", st, dup)
	}
	for _, cmid := range []string{"k2", "k3"} {
		if rc, err := laptop.publish(t, send, deviceEnvelope(bob.ID, "phone", cmid, "x")); err != nil || rc != 0 {
			t.Fatalf("send %s: 0x%02x, %v", cmid, rc, err)
		}
	}
	if rc, _ := laptop.publish(t, send, deviceEnvelope(bob.ID, "phone", "k4", "x")); rc != 0x97 {
		t.Fatalf("past the quota: 0x%02x, want 0x97", rc)
	}
	ev := laptop.box.next(t, "the quota error event", onEvent(alice.ID, "error")).event(t)
	if ev.Code != "quota_exceeded" || ev.CMID != "k4" || ev.ReasonCode != 0x97 {
		t.Fatalf("error event %+v", ev)
	}
	var e errorResponse
	if st := s.call(t, "POST", "/v1/device-messages", alice.Token,
		map[string]any{"to_device": map[string]string{"user": bob.ID, "device": "phone"}, "cmid": "k5", "body": "x"}, nil, &e); st != http.StatusTooManyRequests || e.Error.Code != "quota_exceeded" {
		t.Fatalf("REST past the quota: %d %+v", st, e)
	}
	// Another device's mailbox is its own.
	if st, _ := s.sendDevice(t, alice, bob.ID, "tablet", "k6", "x"); st != http.StatusCreated {
		t.Fatalf("send to another device: %d", st)
	}
	if rc, _ := laptop.publish(t, send, deviceEnvelope(bob.ID, "phone", "k7", nil)); rc != 0x99 {
		t.Fatalf("null body: 0x%02x, want 0x99", rc)
	}
	if rc, _ := laptop.publish(t, send, []byte(`{"to":"user:`+bob.ID+`","to_device":{"user":"`+bob.ID+`","device":"phone"},"cmid":"k8","body":"x"}`)); rc != 0x99 {
		t.Fatalf("to and to_device: 0x%02x, want 0x99", rc)
	}
	if rc, _ := laptop.publish(t, send, deviceEnvelope(alice.ID[:10]+"xxxxxxxxxx", "phone", "k9", "x")); rc != 0x87 {
		t.Fatalf("unknown recipient: 0x%02x, want 0x87", rc)
	}
	ev = laptop.box.next(t, "the unknown_recipient event", func(r received) bool {
		return onEvent(alice.ID, "error")(r) && r.event(t).CMID == "k9"
	}).event(t)
	if ev.Code != "unknown_recipient" {
		t.Fatalf("error event %+v", ev)
	}
}

type errorResponse struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestDeviceMessagesREST: send, pull and acknowledge over REST; a device
// connected meanwhile gets the REST send live.
func TestDeviceMessagesREST(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	phone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))

	st, sent := s.sendDevice(t, alice, bob.ID, "phone", "r1", map[string]string{"ciphertext": "AAEC"})
	if st != http.StatusCreated || sent.Seq != 1 || sent.Duplicate || sent.SentAt == "" || sent.ToDevice.User != bob.ID {
		t.Fatalf("POST /v1/device-messages: %d %+v", st, sent)
	}
	if m := phone.box.next(t, "the REST send, live", onTopic(deviceInbox(bob.ID, "phone"))).device(t); m.CMID != "r1" || m.FromDevice != "" || string(m.Body) != `{"ciphertext":"AAEC"}` {
		t.Fatalf("live: %+v", m)
	}
	var withFrom map[string]any
	if st := s.call(t, "POST", "/v1/device-messages", alice.Token,
		map[string]any{"to_device": map[string]string{"user": bob.ID, "device": "laptop"}, "cmid": "r2", "body": []int{1, 2}, "from_device": "desk"}, nil, &withFrom); st != http.StatusCreated {
		t.Fatalf("with from_device: %d %v", st, withFrom)
	}
	if st, _ := s.sendDevice(t, alice, bob.ID, "laptop", "r3", "third"); st != http.StatusCreated {
		t.Fatalf("third: %d", st)
	}

	var e errorResponse
	if st := s.call(t, "POST", "/v1/device-messages", alice.Token,
		map[string]any{"to_device": map[string]string{"user": "0000000000000000000a", "device": "phone"}, "cmid": "r4", "body": "x"}, nil, &e); st != http.StatusNotFound || e.Error.Code != "not_found" {
		t.Fatalf("unknown user: %d %+v", st, e)
	}
	if st := s.call(t, "POST", "/v1/device-messages", alice.Token, `{"to_device":{"user":"`+bob.ID+`","device":"phone"},"cmid":"r5","body":"x","extra":1}`, nil, &e); st != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %+v", st, e)
	}

	var page struct {
		Messages []deviceMsg `json:"messages"`
	}
	if st := s.call(t, "GET", "/v1/devices/laptop/messages", bob.Token, nil, nil, &page); st != http.StatusOK || len(page.Messages) != 2 {
		t.Fatalf("GET messages: %d %+v", st, page)
	}
	if m := page.Messages[0]; m.Seq != 1 || m.From != alice.ID || m.FromDevice != "desk" || string(m.Body) != "[1,2]" || m.ToDevice != "laptop" {
		t.Fatalf("first: %+v", m)
	}
	if st := s.call(t, "GET", "/v1/devices/laptop/messages?after=1&limit=5", bob.Token, nil, nil, &page); st != http.StatusOK || len(page.Messages) != 1 || page.Messages[0].CMID != "r3" {
		t.Fatalf("after=1: %d %+v", st, page)
	}
	if st := s.call(t, "GET", "/v1/devices/laptop/messages?limit=201", bob.Token, nil, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("limit=201: %d", st)
	}
	// Alice reads her own device's mailbox, never bob's.
	if st := s.call(t, "GET", "/v1/devices/laptop/messages", alice.Token, nil, nil, &page); st != http.StatusOK || len(page.Messages) != 0 {
		t.Fatalf("alice's laptop: %d %+v", st, page)
	}
	var acked struct {
		Deleted int `json:"deleted"`
	}
	if st := s.call(t, "POST", "/v1/devices/laptop/messages/ack", bob.Token, map[string]uint64{"seq": 1}, nil, &acked); st != http.StatusOK || acked.Deleted != 1 {
		t.Fatalf("ack: %d %+v", st, acked)
	}
	if st := s.call(t, "GET", "/v1/devices/laptop/messages", bob.Token, nil, nil, &page); st != http.StatusOK || len(page.Messages) != 1 || page.Messages[0].Seq != 2 {
		t.Fatalf("after the ack: %d %+v", st, page)
	}
	// What is left is replayed to the laptop subscribing to its whole
	// subtree, users/{me}/#, which carries its device inbox too.
	laptop := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "laptop")
	laptop.subscribe(t, "users/"+bob.ID+"/#")
	if m := laptop.box.next(t, "the replay on users/{me}/#", onTopic(deviceInbox(bob.ID, "laptop"))).device(t); m.Seq != 2 || m.CMID != "r3" {
		t.Fatalf("replayed %+v", m)
	}
}

// TestDeviceMessagesV311: a 3.1.1 client sends device messages, reads its
// device inbox, and learns of a refusal from an error event.
func TestDeviceMessagesV311(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	url := "tcp://" + s.addrs.MQTT
	phone := dialV3(t, url, bob, "phone")
	if rc := phone.subscribe(t, deviceInbox(bob.ID, "phone")); rc != 1 {
		t.Fatalf("v3 subscribe own device inbox: 0x%02x", rc)
	}
	other := dialV3(t, url, bob, "tablet")
	if rc := other.subscribe(t, deviceInbox(bob.ID, "phone")); rc != 0x80 {
		t.Fatalf("v3 subscribe another device's inbox: 0x%02x, want 0x80", rc)
	}
	laptop := dialV3(t, url, alice, "laptop")
	if rc := laptop.subscribe(t, "users/"+alice.ID+"/events"); rc != 1 {
		t.Fatalf("events: 0x%02x", rc)
	}
	laptop.publish(t, "users/"+alice.ID+"/send", deviceEnvelope(bob.ID, "phone", "v3-1", "hello"))
	m := phone.box.next(t, "the v3 device message", onTopic(deviceInbox(bob.ID, "phone"))).device(t)
	if m.Seq != 1 || m.From != alice.ID || m.FromDevice != "laptop" || string(m.Body) != `"hello"` {
		t.Fatalf("received %+v", m)
	}
	eventually(t, "the v3 PUBACK deletes it", func() error {
		if n := s.storedDeviceMessages(t, bob.ID, "phone"); n != 0 {
			return fmt.Errorf("%d still stored", n)
		}
		return nil
	})
	laptop.publish(t, "users/"+alice.ID+"/send", deviceEnvelope(bob.ID, "bad/device", "v3-2", "x"))
	ev := laptop.box.next(t, "the error event", onEvent(alice.ID, "error")).event(t)
	if ev.Code != "invalid_payload" || ev.CMID != "v3-2" {
		t.Fatalf("error event %+v", ev)
	}
}

// TestDeviceMessageFromBlockedSender: a device message to someone who
// blocks the sender is accepted and never reaches them.
func TestDeviceMessageFromBlockedSender(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	if st := s.call(t, "POST", "/v1/blocks", bob.Token, map[string]string{"user_id": alice.ID}, nil, nil); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("block: %d", st)
	}
	phone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))
	laptop := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "laptop")
	if rc, err := laptop.publish(t, "users/"+alice.ID+"/send", deviceEnvelope(bob.ID, "phone", "b1", "x")); err != nil || rc != 0 {
		t.Fatalf("blocked sender's send: 0x%02x, %v", rc, err)
	}
	if st, res := s.sendDevice(t, alice, bob.ID, "phone", "b2", "x"); st != http.StatusCreated || res.Duplicate {
		t.Fatalf("blocked sender's REST send: %d %+v", st, res)
	}
	if n := s.storedDeviceMessages(t, bob.ID, "phone"); n != 0 {
		t.Fatalf("%d stored for the blocker", n)
	}
	// Someone else's message is the first and only one bob's phone gets.
	carol := s.register(t, "carol")
	if st, _ := s.sendDevice(t, carol, bob.ID, "phone", "c1", "x"); st != http.StatusCreated {
		t.Fatalf("carol's send: %d", st)
	}
	if m := phone.box.next(t, "carol's message", onTopic(deviceInbox(bob.ID, "phone"))).device(t); m.From != carol.ID {
		t.Fatalf("bob's phone got %+v", m)
	}
}

// TestClusterDeviceMessages: a device message sent on one node reaches the
// device connected to another live, through the per-user relay; sent while
// the device is offline, it is replayed from the shared store by whichever
// node the device subscribes on, and its PUBACK there deletes it for all.
func TestClusterDeviceMessages(t *testing.T) {
	const n1, n2 = 0, 1
	c := startCluster(t, 2)
	alice := c.server(n1).register(t, "alice")
	bob := c.server(n2).register(t, "bob")
	laptop := dialV5(t, tcpConn(t, c.nodes[n1].mqttAddr), alice, "laptop")
	phone := dialV5(t, tcpConn(t, c.nodes[n2].mqttAddr), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))

	if rc, err := laptop.publish(t, "users/"+alice.ID+"/send", deviceEnvelope(bob.ID, "phone", "live", "x")); err != nil || rc != 0 {
		t.Fatalf("send on n1: 0x%02x, %v", rc, err)
	}
	if m := phone.box.next(t, "the relayed device message", onTopic(deviceInbox(bob.ID, "phone"))).device(t); m.CMID != "live" || m.FromDevice != "laptop" {
		t.Fatalf("bob's phone on n2 got %+v", m)
	}
	if err := phone.c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if st, _ := c.server(n1).sendDevice(t, alice, bob.ID, "phone", fmt.Sprint("off", i), i); st != http.StatusCreated {
			t.Fatalf("REST send on n1: %d", st)
		}
	}
	phone = dialV5(t, tcpConn(t, c.nodes[n2].mqttAddr), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))
	for i := range 3 {
		m := phone.box.next(t, "a replayed device message", onTopic(deviceInbox(bob.ID, "phone"))).device(t)
		if m.CMID != fmt.Sprint("off", i) || m.Seq != uint64(i+2) {
			t.Fatalf("replayed %d: %+v", i, m)
		}
	}
	eventually(t, "the PUBACKs on n2 delete them", func() error {
		var page struct {
			Messages []deviceMsg `json:"messages"`
		}
		if st := c.server(n1).call(t, "GET", "/v1/devices/phone/messages", bob.Token, nil, nil, &page); st != http.StatusOK {
			return fmt.Errorf("GET on n1: %d", st)
		}
		if len(page.Messages) != 0 {
			return fmt.Errorf("%d still pending", len(page.Messages))
		}
		return nil
	})
}

// TestDeviceReplayPacedByInflight: a backlog larger than the client's
// inflight window is replayed whole and in order, the replay waiting for
// PUBACKs instead of overrunning the window (where mochi drops publishes).
func TestDeviceReplayPacedByInflight(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MQTT.MaxInflight = 8 })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	const n = 60
	for i := range n {
		if st, _ := s.sendDevice(t, alice, bob.ID, "phone", fmt.Sprint("p", i), i); st != http.StatusCreated {
			t.Fatalf("send %d: %d", i, st)
		}
	}
	phone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	phone.subscribe(t, deviceInbox(bob.ID, "phone"))
	for i := range n {
		m := phone.box.next(t, fmt.Sprint("replayed message ", i+1), onTopic(deviceInbox(bob.ID, "phone"))).device(t)
		if m.Seq != uint64(i+1) {
			t.Fatalf("replayed seq %d, want %d", m.Seq, i+1)
		}
	}
	eventually(t, "every replayed message acknowledged", func() error {
		if left := s.storedDeviceMessages(t, bob.ID, "phone"); left != 0 {
			return fmt.Errorf("%d still stored", left)
		}
		return nil
	})
}
