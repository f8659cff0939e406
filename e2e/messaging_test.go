package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
)

// TestDirectMessagingAcrossVersionsAndTransports: two users registered over
// REST exchange 1:1 messages between an MQTT 5 client (paho.golang) and a
// 3.1.1 client (paho.mqtt.golang), over TCP and over WebSocket. Every
// message arrives once per recipient device with chat and seq, and the
// sender's other device gets the copy.
func TestDirectMessagingAcrossVersionsAndTransports(t *testing.T) {
	s := startServer(t, nil)
	tests := []struct {
		name      string
		transport string // tcp | ws
	}{
		{"tcp", "tcp"},
		{"websocket", "ws"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice := s.register(t, "alice-"+tc.name)
			bob := s.register(t, "bob-"+tc.name)
			chat := directChat(alice.ID, bob.ID)

			var alicePhone, aliceLaptop *v5
			var bobPhone *v3
			if tc.transport == "tcp" {
				alicePhone = dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
				aliceLaptop = dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "laptop")
				bobPhone = dialV3(t, "tcp://"+s.addrs.MQTT, bob, "phone")
			} else {
				alicePhone = dialV5(t, wsConn(t, s.addrs.WS, "/mqtt"), alice, "phone")
				aliceLaptop = dialV5(t, wsConn(t, s.addrs.WS, "/mqtt"), alice, "laptop")
				bobPhone = dialV3(t, "ws://"+s.addrs.WS+"/mqtt", bob, "phone")
			}
			for _, c := range []*v5{alicePhone, aliceLaptop} {
				if rc := c.subscribe(t, "users/"+alice.ID+"/inbox"); rc[0] != 1 {
					t.Fatalf("subscribe own inbox: reason 0x%02x", rc[0])
				}
			}
			if rc := bobPhone.subscribe(t, "users/"+bob.ID+"/#"); rc != 1 {
				t.Fatalf("v3 subscribe own subtree: return code 0x%02x", rc)
			}

			const n = 5
			for i := 1; i <= n; i++ {
				alicePhone.send(t, bob.ID, fmt.Sprintf("a%d", i), fmt.Sprintf("hello %d", i))
				bobPhone.send(t, alice.ID, fmt.Sprintf("b%d", i), fmt.Sprintf("hi %d", i))
			}

			// Each device sees all 2n messages of the chat exactly once, with
			// seqs 1..2n in order (each chat has one writer, which publishes in
			// seq order).
			for _, dev := range []struct {
				name string
				box  mailbox
				tpc  string
			}{
				{"alice phone", alicePhone.box, "users/" + alice.ID + "/inbox"},
				{"alice laptop", aliceLaptop.box, "users/" + alice.ID + "/inbox"},
				{"bob phone", bobPhone.box, "users/" + bob.ID + "/inbox"},
			} {
				seen := map[string]bool{}
				for want := uint64(1); want <= 2*n; want++ {
					m := dev.box.next(t, dev.name+" inbox", onTopic(dev.tpc)).inbox(t)
					if m.Chat != chat || m.Seq != want {
						t.Fatalf("%s: got chat %s seq %d, want %s seq %d", dev.name, m.Chat, m.Seq, chat, want)
					}
					if seen[m.CMID] {
						t.Fatalf("%s: cmid %s delivered twice", dev.name, m.CMID)
					}
					seen[m.CMID] = true
					if m.ID == "" || m.SentAt == "" || m.Type != "text" {
						t.Fatalf("%s: incomplete message %+v", dev.name, m)
					}
					wantFrom := alice.ID
					if m.CMID[0] == 'b' {
						wantFrom = bob.ID
					}
					if m.From != wantFrom {
						t.Fatalf("%s: %s from %s, want %s", dev.name, m.CMID, m.From, wantFrom)
					}
				}
			}
			page := s.history(t, bob, chat, "")
			if len(page.Messages) != 2*n || page.Messages[0].Seq != 1 || page.Messages[2*n-1].Seq != 2*n {
				t.Fatalf("history: %d messages %+v", len(page.Messages), page.Messages)
			}
		})
	}
}

// TestSendOverHTTP: POST /v1/chats/{chat}/messages runs the same pipeline,
// with Idempotency-Key as the cmid, and MQTT devices receive it.
func TestSendOverHTTP(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	bobPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobPhone.subscribe(t, "users/"+bob.ID+"/inbox")

	var first, again struct {
		Chat string `json:"chat"`
		Seq  uint64 `json:"seq"`
		ID   string `json:"id"`
	}
	body := map[string]any{"type": "text", "body": "over http"}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/messages", alice.Token, body, map[string]string{"Idempotency-Key": "h1"}, &first); st != http.StatusCreated {
		t.Fatalf("send over http: status %d", st)
	}
	if first.Chat != chat || first.Seq != 1 || first.ID == "" {
		t.Fatalf("send over http: %+v", first)
	}
	m := bobPhone.box.next(t, "bob inbox", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	if m.Seq != 1 || m.CMID != "h1" || string(m.Body) != `"over http"` {
		t.Fatalf("delivered %+v", m)
	}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/messages", alice.Token, body, map[string]string{"Idempotency-Key": "h1"}, &again); st != http.StatusCreated || again != first {
		t.Fatalf("retry: status %d %+v, want %+v", st, again, first)
	}
	if got := s.history(t, alice, chat, ""); len(got.Messages) != 1 {
		t.Fatalf("history after retry holds %d messages, want 1", len(got.Messages))
	}

	tests := []struct {
		name   string
		chat   string
		token  string
		header map[string]string
		body   any
		status int
		code   string
	}{
		{"no idempotency key", chat, alice.Token, nil, body, 400, "invalid_payload"},
		{"bad json", chat, alice.Token, map[string]string{"Idempotency-Key": "x1"}, `{"body":`, 400, "invalid_payload"},
		{"unknown field", chat, alice.Token, map[string]string{"Idempotency-Key": "x2"}, `{"bdy":"x"}`, 400, "invalid_payload"},
		{"missing body", chat, alice.Token, map[string]string{"Idempotency-Key": "x3"}, `{"type":"text"}`, 400, "invalid_payload"},
		{"not a member", directChat(bob.ID, ids.NewUserID()), alice.Token, map[string]string{"Idempotency-Key": "x4"}, body, 403, "not_authorized"},
		{"no token", chat, "", map[string]string{"Idempotency-Key": "x5"}, body, 401, "unauthenticated"},
		{"garbage token", chat, "nope", map[string]string{"Idempotency-Key": "x6"}, body, 401, "unauthenticated"},
		{"too large", chat, alice.Token, map[string]string{"Idempotency-Key": "x7"}, map[string]any{"body": string(make([]byte, 70<<10))}, 413, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			st := s.call(t, "POST", "/v1/chats/"+tc.chat+"/messages", tc.token, tc.body, tc.header, &e)
			if st != tc.status || (tc.code != "" && e.Error.Code != tc.code) || e.Error.Message == "" {
				t.Fatalf("status %d error %+v, want %d %s", st, e.Error, tc.status, tc.code)
			}
		})
	}
	if got := s.history(t, alice, chat, ""); len(got.Messages) != 1 {
		t.Fatalf("refused sends were stored: %d messages", len(got.Messages))
	}
}
