package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/fcmtest"
)

// pushAckTimeout is the test's push.ack_timeout: short, so waiting past
// it keeps the suite fast, yet far above a loopback PUBACK.
const pushAckTimeout = 300 * time.Millisecond

// startPushServer runs a node that pushes through the real Firebase SDK
// to an fcmtest stand-in.
func startPushServer(t *testing.T, mutate func(*config.Config)) (*server, *fcmtest.Server) {
	t.Helper()
	fcm, err := fcmtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fcm.Close)
	s := startServer(t, func(c *config.Config) {
		c.Push.Provider = "fcm"
		c.Push.FCM.CredentialsFile = fcm.CredentialsFile
		c.Push.FCM.Endpoint = fcm.Endpoint
		c.Push.AckTimeout = pushAckTimeout
		c.Push.RetryBackoff = 20 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	})
	return s, fcm
}

func (s *server) putDevice(t *testing.T, a account, device, platform, token string) {
	t.Helper()
	if st := s.call(t, "PUT", "/v1/devices/"+device, a.Token, map[string]string{"platform": platform, "push_token": token}, nil, nil); st != http.StatusOK {
		t.Fatalf("PUT device %s: status %d", device, st)
	}
}

type deviceList struct {
	Devices []struct {
		DeviceID  string `json:"device_id"`
		Platform  string `json:"platform"`
		PushToken string `json:"push_token"`
	} `json:"devices"`
}

func (s *server) devices(t *testing.T, a account) deviceList {
	t.Helper()
	var out deviceList
	if st := s.call(t, "GET", "/v1/devices", a.Token, nil, nil, &out); st != http.StatusOK {
		t.Fatalf("GET devices: status %d", st)
	}
	return out
}

// pushesTo waits until token has received n pushes, then checks that no
// more arrive for settle, and returns them.
func pushesTo(t *testing.T, fcm *fcmtest.Server, token string, n int, settle time.Duration) []fcmtest.Request {
	t.Helper()
	_, ok := fcm.Wait(waitTimeout, func([]fcmtest.Request) bool { return len(fcm.To(token)) >= n })
	if !ok {
		t.Fatalf("token %s: %d pushes, want %d", token, len(fcm.To(token)), n)
	}
	time.Sleep(settle)
	got := fcm.To(token)
	if len(got) != n {
		t.Fatalf("token %s: %d pushes, want exactly %d: %+v", token, len(got), n, got)
	}
	return got
}

// dialNoAck connects a v5 device that receives but never acknowledges.
func dialNoAck(t *testing.T, s *server, a account, device string) mailbox {
	t.Helper()
	box := newMailbox()
	c := paho.NewClient(paho.ClientConfig{
		Conn:                       tcpConn(t, s.addrs.MQTT),
		EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			box <- received{Topic: p.Packet.Topic, Payload: p.Packet.Payload}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{
		ClientID: a.ID + "/" + device, Username: a.ID, UsernameFlag: true, Password: []byte(a.Token), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true,
	}); err != nil {
		t.Fatalf("connect %s: %v", device, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "users/" + a.ID + "/inbox", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return box
}

// TestDeviceTokensREST: register, replace, list and delete push tokens.
func TestDeviceTokensREST(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	s.putDevice(t, alice, "phone", "android", "tok-1")
	s.putDevice(t, alice, "phone", "android", "tok-2") // a refreshed token replaces the old one
	s.putDevice(t, alice, "laptop", "web", "tok-web")
	got := s.devices(t, alice)
	if len(got.Devices) != 2 || got.Devices[0].DeviceID != "laptop" || got.Devices[1].PushToken != "tok-2" {
		t.Fatalf("devices %+v", got)
	}
	// A phone that changes account takes its token along.
	s.putDevice(t, bob, "phone", "ios", "tok-2")
	if d := s.devices(t, alice).Devices; len(d) != 1 || d[0].DeviceID != "laptop" {
		t.Fatalf("alice kept bob's token: %+v", d)
	}
	if st := s.call(t, "DELETE", "/v1/devices/laptop", alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d", st)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st := s.call(t, "DELETE", "/v1/devices/laptop", alice.Token, nil, nil, &e); st != http.StatusNotFound || e.Error.Code != "not_found" {
		t.Fatalf("DELETE again: %d %+v", st, e)
	}
	for _, c := range []struct {
		path, body, code string
	}{
		{"/v1/devices/phone", `{"platform":"symbian","push_token":"x"}`, "invalid_payload"},
		{"/v1/devices/phone", `{"platform":"ios","push_token":""}`, "invalid_payload"},
		{"/v1/devices/phone", `{"platform":"ios","push_token":"x","extra":1}`, "invalid_payload"},
		{"/v1/devices/a+b", `{"platform":"ios","push_token":"x"}`, "invalid_payload"},
	} {
		e.Error.Code = ""
		if st := s.call(t, "PUT", c.path, alice.Token, c.body, nil, &e); st != http.StatusBadRequest || e.Error.Code != c.code {
			t.Errorf("PUT %s %s: %d %q, want 400 %s", c.path, c.body, st, e.Error.Code, c.code)
		}
	}
	if st := s.call(t, "GET", "/v1/devices", "", nil, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("GET without token: %d", st)
	}

	// Devices per user are bounded; re-registering one already there is
	// still fine at the bound.
	carol := s.register(t, "carol")
	for i := range 32 {
		s.putDevice(t, carol, fmt.Sprint("d", i), "android", fmt.Sprint("carol-tok-", i))
	}
	e.Error.Code = ""
	if st := s.call(t, "PUT", "/v1/devices/one-more", carol.Token, map[string]string{"platform": "web", "push_token": "x"}, nil, &e); st != http.StatusConflict || e.Error.Code != "conflict" {
		t.Fatalf("33rd device: %d %q, want 409 conflict", st, e.Error.Code)
	}
	s.putDevice(t, carol, "d0", "ios", "carol-tok-new")
	if d := s.devices(t, carol).Devices; len(d) != 32 || d[0].PushToken != "carol-tok-new" {
		t.Fatalf("carol's devices after the refusal: %d, first %+v", len(d), d[0])
	}
}

// TestPushOfflineRecipient: a recipient with no connected device gets
// exactly one push per message, with the chat's data; the sender, whose
// other device has a token too, gets none; the body stays out by default.
func TestPushOfflineRecipient(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	allowRequestPush(t, s, bob)
	s.putDevice(t, alice, "tablet", "ios", "tok-alice")
	s.putDevice(t, bob, "phone", "android", "tok-bob")
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	chat := directChat(alice.ID, bob.ID)

	aPhone.send(t, bob.ID, "c1", "secret plans")
	first := pushesTo(t, fcm, "tok-bob", 1, 2*pushAckTimeout)[0].Message
	if first.Data["chat"] != chat || first.Data["seq"] != "1" || first.Data["from"] != alice.ID || first.Data["unread"] != "1" {
		t.Fatalf("push data %v", first.Data)
	}
	if first.Notification.Title != "alice" || first.Notification.Body != "New message" {
		t.Fatalf("notification %+v: the body must not leave without push.include_body", first.Notification)
	}
	if first.Android.CollapseKey != chat || first.APNS.Headers["apns-collapse-id"] != chat {
		t.Fatalf("not collapsed per chat: %+v %+v", first.Android, first.APNS)
	}
	aPhone.send(t, bob.ID, "c2", "more")
	second := pushesTo(t, fcm, "tok-bob", 2, 2*pushAckTimeout)[1].Message
	if second.Data["seq"] != "2" || second.Data["unread"] != "2" {
		t.Fatalf("second push data %v", second.Data)
	}
	if n := len(fcm.To("tok-alice")); n != 0 {
		t.Fatalf("the sender got %d pushes", n)
	}
}

// TestPushCollapsesPerChat: messages to an offline user while the push
// provider is slow fold into one push per chat carrying the newest seq.
func TestPushCollapsesPerChat(t *testing.T) {
	s, fcm := startPushServer(t, func(c *config.Config) { c.Push.Workers = 1 })
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	allowRequestPush(t, s, bob, carol)
	s.putDevice(t, carol, "phone", "android", "tok-carol")
	s.putDevice(t, bob, "phone", "android", "tok-bob")
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")

	release := fcm.Hold()
	aPhone.send(t, carol.ID, "busy", "keeps the worker busy")
	pushesTo(t, fcm, "tok-carol", 1, 0)
	for i := range 5 {
		aPhone.send(t, bob.ID, fmt.Sprint("m", i), "hello")
	}
	// Fan-out (which queues pushes) follows the PUBACK: wait until all five
	// have reached the queue, folded into one job, before the worker frees.
	eventually(t, "five messages queued as one push", func() error {
		if v := scrape(t, s)["mqchat_push_collapsed_total"]; v != 4 {
			return fmt.Errorf("collapsed_total = %v", v)
		}
		return nil
	})
	release()
	got := pushesTo(t, fcm, "tok-bob", 1, 2*pushAckTimeout)[0].Message
	if got.Data["seq"] != "5" || got.Data["unread"] != "5" || got.Notification.Body != "5 new messages" {
		t.Fatalf("collapsed push %v %+v", got.Data, got.Notification)
	}
	if v := scrape(t, s)["mqchat_push_collapsed_total"]; v != 4 {
		t.Fatalf("collapsed_total = %v, want 4", v)
	}
}

// TestPushOnlineRecipient: a device that acknowledges the inbox message
// prevents the push; a connected device that never acknowledges causes
// exactly one, after push.ack_timeout.
func TestPushOnlineRecipient(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	allowRequestPush(t, s, bob, carol)
	s.putDevice(t, bob, "phone", "android", "tok-bob")
	s.putDevice(t, carol, "phone", "android", "tok-carol")
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	carolBox := dialNoAck(t, s, carol, "phone")

	aPhone.send(t, bob.ID, "to-bob", "hi bob")
	bPhone.box.next(t, "bob's inbox message", onTopic("users/"+bob.ID+"/inbox"))
	sent := time.Now()
	aPhone.send(t, carol.ID, "to-carol", "hi carol")
	carolBox.next(t, "carol's inbox message", onTopic("users/"+carol.ID+"/inbox"))

	push := pushesTo(t, fcm, "tok-carol", 1, 2*pushAckTimeout)[0]
	if waited := push.At.Sub(sent); waited < pushAckTimeout {
		t.Fatalf("carol pushed after %s, before the ack timeout %s", waited, pushAckTimeout)
	}
	if n := len(fcm.To("tok-bob")); n != 0 {
		t.Fatalf("bob's device acked, yet he got %d pushes", n)
	}
}

// TestPushGroup: each group member is judged on its own: the offline one
// is pushed, the acking one not, the silent one after the timeout, the
// sender never.
func TestPushGroup(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")
	for _, a := range []account{alice, bob, carol, dave} {
		s.putDevice(t, a, "phone", "android", "tok-"+a.Username)
	}
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	daveBox := dialNoAck(t, s, dave, "phone")

	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "trip", "members": []string{bob.ID, carol.ID, dave.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	if rc, err := aPhone.publish(t, "users/"+alice.ID+"/send", groupEnvelope(g.GroupID, "g1", "hello all")); err != nil || rc != 0 {
		t.Fatalf("group send: 0x%02x %v", rc, err)
	}
	bPhone.box.next(t, "bob's group message", func(r received) bool { return r.inbox(t).CMID == "g1" })
	daveBox.next(t, "dave's group message", func(r received) bool { return r.inbox(t).CMID == "g1" })

	carolPush := pushesTo(t, fcm, "tok-carol", 1, 0)[0].Message
	davePush := pushesTo(t, fcm, "tok-dave", 1, 2*pushAckTimeout)[0].Message
	for _, p := range []fcmtest.Message{carolPush, davePush} {
		if p.Data["chat"] != g.Chat || p.Data["from"] != alice.ID {
			t.Fatalf("group push data %v", p.Data)
		}
	}
	for _, a := range []account{alice, bob} {
		if n := len(fcm.To("tok-" + a.Username)); n != 0 {
			t.Fatalf("%s got %d pushes", a.Username, n)
		}
	}
}

// TestPushUnregisteredTokenDeleted: FCM's UNREGISTERED answer removes the
// device's token; the user's other device still gets the push.
func TestPushUnregisteredTokenDeleted(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	allowRequestPush(t, s, bob)
	s.putDevice(t, bob, "old-phone", "android", "tok-old")
	s.putDevice(t, bob, "tablet", "ios", "tok-tablet")
	fcm.Script("tok-old", fcmtest.Unregistered)
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")

	aPhone.send(t, bob.ID, "c1", "hi")
	pushesTo(t, fcm, "tok-tablet", 1, 0)
	eventually(t, "devices after UNREGISTERED", func() error {
		if d := s.devices(t, bob).Devices; len(d) != 1 || d[0].DeviceID != "tablet" {
			return fmt.Errorf("%+v", d)
		}
		return nil
	})
	// The counters move just after the token is deleted.
	eventually(t, "push metrics", func() error {
		m := scrape(t, s)
		if m["mqchat_push_tokens_removed_total"] != 1 || m[`mqchat_push_failed_total{reason="unregistered"}`] != 1 {
			return fmt.Errorf("removed %v, failed %v", m["mqchat_push_tokens_removed_total"], m[`mqchat_push_failed_total{reason="unregistered"}`])
		}
		return nil
	})
	aPhone.send(t, bob.ID, "c2", "again")
	pushesTo(t, fcm, "tok-tablet", 2, 2*pushAckTimeout)
	if n := len(fcm.To("tok-old")); n != 1 {
		t.Fatalf("the dead token was tried %d times", n)
	}
}

// TestPushUnavailableRetried: UNAVAILABLE answers are retried with
// backoff until FCM accepts the push.
func TestPushUnavailableRetried(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	allowRequestPush(t, s, bob)
	s.putDevice(t, bob, "phone", "android", "tok-bob")
	fcm.Script("tok-bob", fcmtest.Unavailable, fcmtest.Unavailable)
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")

	aPhone.send(t, bob.ID, "c1", "hi")
	reqs := pushesTo(t, fcm, "tok-bob", 3, 2*pushAckTimeout)
	if reqs[0].Answer != fcmtest.Unavailable || reqs[1].Answer != fcmtest.Unavailable || reqs[2].Answer != fcmtest.OK {
		t.Fatalf("answers %s %s %s", reqs[0].Answer, reqs[1].Answer, reqs[2].Answer)
	}
	if gap := reqs[2].At.Sub(reqs[1].At); gap <= reqs[1].At.Sub(reqs[0].At) {
		t.Fatalf("no growing backoff: %s then %s", reqs[1].At.Sub(reqs[0].At), gap)
	}
	eventually(t, "the retried push counted sent", func() error {
		if v := scrape(t, s)["mqchat_push_sent_total"]; v != 1 {
			return fmt.Errorf("sent_total = %v", v)
		}
		return nil
	})
}

// TestPushQueueFull: with the provider stuck and the queue full, pushes
// are dropped and counted while messages keep flowing through the broker.
func TestPushQueueFull(t *testing.T) {
	s, fcm := startPushServer(t, func(c *config.Config) {
		c.Push.Workers = 1
		c.Push.QueueSize = 2
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	allowRequestPush(t, s, bob)
	const offline = 6
	var users []account
	for i := range offline {
		u := s.register(t, fmt.Sprint("off", i))
		allowRequestPush(t, s, u)
		s.putDevice(t, u, "phone", "android", "tok-"+u.Username)
		users = append(users, u)
	}
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/inbox")

	release := fcm.Hold()
	defer release()
	aPhone.send(t, users[0].ID, "first", "x")
	fcm.Wait(waitTimeout, func(r []fcmtest.Request) bool { return len(r) == 1 })
	for i, u := range users[1:] {
		aPhone.send(t, u.ID, fmt.Sprint("m", i), "x")
	}
	// Still responsive: sends are acknowledged and delivered while the
	// push worker is stuck.
	aPhone.send(t, bob.ID, "live", "still flowing")
	bPhone.box.next(t, "bob's message", func(r received) bool { return r.inbox(t).CMID == "live" })
	eventually(t, "drops and queue depth", func() error {
		m := scrape(t, s)
		if m["mqchat_push_dropped_total"] != offline-1-2 || m["mqchat_push_queue_depth"] != 2 {
			return fmt.Errorf("dropped %v depth %v, want %d and 2", m["mqchat_push_dropped_total"], m["mqchat_push_queue_depth"], offline-3)
		}
		return nil
	})
	release()
	if _, ok := fcm.Wait(waitTimeout, func(r []fcmtest.Request) bool { return len(r) == 3 }); !ok {
		t.Fatalf("%d pushes after release, want 3", len(fcm.Requests()))
	}
}

// TestPushE2EWithoutBody: a push for an "e2e" message carries no body
// even with push.include_body on, while a text message's does.
func TestPushE2EWithoutBody(t *testing.T) {
	s, fcm := startPushServer(t, func(c *config.Config) { c.Push.IncludeBody = true })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	allowRequestPush(t, s, bob)
	s.putDevice(t, bob, "phone", "android", "tok-bob")
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")

	const ciphertext = "c2VjcmV0IHBsYW5zIGluIGJhc2U2NA=="
	raw, _ := json.Marshal(map[string]any{"to": "user:" + bob.ID, "cmid": "e1", "type": "e2e", "body": ciphertext})
	if rc, err := aPhone.publish(t, "users/"+alice.ID+"/send", raw); err != nil || rc != 0 {
		t.Fatalf("e2e send: 0x%02x, %v", rc, err)
	}
	first := pushesTo(t, fcm, "tok-bob", 1, 2*pushAckTimeout)[0].Message
	if first.Notification.Body != "New message" {
		t.Fatalf("e2e push body %q, want the summary", first.Notification.Body)
	}
	for k, v := range first.Data {
		if strings.Contains(v, ciphertext[:12]) {
			t.Fatalf("push data %s carries the ciphertext: %q", k, v)
		}
	}
	// The e2e message is stored and delivered like any other.
	if page := s.history(t, bob, directChat(alice.ID, bob.ID), ""); len(page.Messages) != 1 || page.Messages[0].Type != "e2e" ||
		string(page.Messages[0].Body) != `"`+ciphertext+`"` {
		t.Fatalf("history %+v", page.Messages)
	}
	// Control: with include_body a text message's body does leave, so the
	// summary above is the e2e rule at work.
	s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, bob.ID)+"/read", bob.Token, map[string]uint64{"seq": 1}, nil, nil)
	aPhone.send(t, bob.ID, "t1", "plain words")
	second := pushesTo(t, fcm, "tok-bob", 2, 2*pushAckTimeout)[1].Message
	if second.Notification.Body != "plain words" {
		t.Fatalf("text push body %q, want the text", second.Notification.Body)
	}
}
