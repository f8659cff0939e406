package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/fcmtest"
)

// chatEntry returns a's chat-list entry of chat.
func chatEntry(t *testing.T, s *server, a account, chat string) chatSummaryWithRequest {
	t.Helper()
	var out struct {
		Chats []chatSummaryWithRequest `json:"chats"`
	}
	if st := s.call(t, "GET", "/v1/chats?limit=200", a.Token, nil, nil, &out); st != http.StatusOK {
		t.Fatalf("GET /v1/chats: %d", st)
	}
	for _, c := range out.Chats {
		if c.Chat == chat {
			return c
		}
	}
	t.Fatalf("%s's chat list has no %s: %+v", a.Username, chat, out.Chats)
	return chatSummaryWithRequest{}
}

type chatSummaryWithRequest struct {
	Chat    string `json:"chat"`
	Unread  uint64 `json:"unread"`
	Request bool   `json:"request"`
}

func presenceStatus(t *testing.T, s *server, viewer, target account) int {
	t.Helper()
	return s.call(t, "GET", "/v1/presence/"+target.ID, viewer.Token, nil, nil, nil)
}

// TestMessageRequests: a 1:1 chat opened by someone alice shares no chat
// with is a request: its messages are stored and delivered to alice,
// marked "request" in her chat list and not pushed; presence and typing
// stay hidden both ways until alice accepts or replies. Someone sharing a
// group with alice opens a plain chat. request_push lets requests be
// pushed.
func TestMessageRequests(t *testing.T) {
	s, fcm := startPushServer(t, presenceConfig(time.Minute))
	alice, stan, carol, dave, eve := s.register(t, "alice"), s.register(t, "stan"), s.register(t, "carol"),
		s.register(t, "dave"), s.register(t, "eve")
	s.putDevice(t, alice, "tablet", "android", "tok-alice")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "friends", "members": []string{carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	stanDev := dialDevice(t, s, "v5", stan, "phone")
	stanChat := directChat(alice.ID, stan.ID)
	carolChat := directChat(alice.ID, carol.ID)

	// alice offline: stan's message is stored, but no push.
	stanDev.wantRC(t, stanDev.request(t, "send", envelope(alice.ID, "s1", "hello stranger")), 0)
	stanDev.next(t, "stan's own copy", func(r received) bool {
		return r.Topic == "users/"+stan.ID+"/inbox" && r.inbox(t).CMID == "s1"
	})
	// carol shares a group with alice: her chat is no request, and pushed.
	if st := s.call(t, "POST", "/v1/chats/"+carolChat+"/messages", carol.Token, map[string]any{"body": "hi"},
		map[string]string{"Idempotency-Key": "c1"}, nil); st != http.StatusCreated {
		t.Fatalf("carol's send: %d", st)
	}
	waitPushFor(t, fcm, "tok-alice", carolChat)
	for _, r := range fcm.To("tok-alice") {
		if r.Message.Data["chat"] == stanChat {
			t.Fatalf("alice was pushed for stan's request: %+v", r.Message.Data)
		}
	}
	if e := chatEntry(t, s, alice, stanChat); !e.Request || e.Unread != 1 {
		t.Fatalf("alice's entry of stan's chat = %+v, want a request with 1 unread", e)
	}
	if e := chatEntry(t, s, stan, stanChat); e.Request {
		t.Fatalf("stan's own entry is marked a request: %+v", e)
	}
	if e := chatEntry(t, s, alice, carolChat); e.Request {
		t.Fatalf("carol's chat (a shared group) is a request: %+v", e)
	}
	if got := s.history(t, alice, stanChat, "?limit=10").Messages; len(got) != 1 || got[0].CMID != "s1" {
		t.Fatalf("alice's history of the request = %+v", got)
	}

	// alice comes online: the request's messages are delivered to her,
	// but presence and typing stay hidden both ways.
	aliceDev := dialDevice(t, s, "v5", alice, "phone")
	connectDevice(t, s, 5, alice, "presence", 30)
	stanDev.wantRC(t, stanDev.request(t, "send", envelope(alice.ID, "s2", "still there?")), 0)
	if m := aliceDev.inbox(t); m.CMID != "s2" || m.From != stan.ID {
		t.Fatalf("alice got %+v, want stan's s2", m)
	}
	for _, pair := range [][2]account{{stan, alice}, {alice, stan}} {
		if st := presenceStatus(t, s, pair[0], pair[1]); st != http.StatusForbidden {
			t.Fatalf("%s asks %s's presence during the request: %d, want 403", pair[0].Username, pair[1].Username, st)
		}
	}
	if rc := connectDevice(t, s, 5, stan, "watch", 30).subscribe("presence/" + alice.ID); rc != refused(5) {
		t.Fatalf("stan's SUBACK to alice's presence during the request = 0x%02x", rc)
	}
	stanDev.wantRC(t, stanDev.request(t, "typing", map[string]string{"chat": stanChat}), 0)
	waitMarker(t, s, aliceDev, carol, "marker-1", func(r received) error {
		if r.Topic == "users/"+alice.ID+"/events" {
			if e := r.event(t); e.Type == "typing" && e.User == stan.ID {
				return fmt.Errorf("alice got stan's typing during the request: %s", r.Payload)
			}
		}
		return nil
	})

	// Replying accepts.
	aliceDev.wantRC(t, aliceDev.request(t, "send", envelope(stan.ID, "a1", "hi stan")), 0)
	if e := chatEntry(t, s, alice, stanChat); e.Request {
		t.Fatalf("still a request after alice replied: %+v", e)
	}
	for _, pair := range [][2]account{{stan, alice}, {alice, stan}} {
		if st := presenceStatus(t, s, pair[0], pair[1]); st != http.StatusOK {
			t.Fatalf("%s asks %s's presence after the reply: %d, want 200", pair[0].Username, pair[1].Username, st)
		}
	}
	// (alice's first notice: stan's one of the last 2 s was spent above)
	aliceDev.wantRC(t, aliceDev.request(t, "typing", map[string]string{"chat": stanChat}), 0)
	if ev := stanDev.event(t, "typing"); ev.User != alice.ID || ev.Chat != stanChat {
		t.Fatalf("stan got typing %+v after alice accepted", ev)
	}

	// Explicit accept; refusals for chats that are not the caller's.
	daveChat := directChat(alice.ID, dave.ID)
	if st := s.call(t, "POST", "/v1/chats/"+daveChat+"/messages", dave.Token, map[string]any{"body": "hey"},
		map[string]string{"Idempotency-Key": "d1"}, nil); st != http.StatusCreated {
		t.Fatalf("dave's send: %d", st)
	}
	if e := chatEntry(t, s, alice, daveChat); !e.Request {
		t.Fatalf("dave's chat is no request: %+v", e)
	}
	if st := presenceStatus(t, s, dave, alice); st != http.StatusForbidden {
		t.Fatalf("dave asks alice's presence before the accept: %d", st)
	}
	for _, tc := range []struct {
		who  account
		chat string
		want int
	}{
		{eve, daveChat, http.StatusForbidden},
		{alice, g.Chat, http.StatusForbidden},
		{alice, "nonsense", http.StatusForbidden},
		{alice, daveChat, http.StatusNoContent},
		{alice, daveChat, http.StatusNoContent}, // again: harmless
	} {
		if st := s.call(t, "POST", "/v1/chats/"+tc.chat+"/accept", tc.who.Token, nil, nil, nil); st != tc.want {
			t.Fatalf("%s accepts %s: %d, want %d", tc.who.Username, tc.chat, st, tc.want)
		}
	}
	if e := chatEntry(t, s, alice, daveChat); e.Request {
		t.Fatalf("dave's chat still a request after the accept: %+v", e)
	}
	if st := presenceStatus(t, s, dave, alice); st != http.StatusOK {
		t.Fatalf("dave asks alice's presence after the accept: %d", st)
	}

	// request_push: eve's request to fay (offline, who allows it) is pushed.
	fay := s.register(t, "fay")
	s.putDevice(t, fay, "phone", "android", "tok-fay")
	var pv privacyView
	if st := s.call(t, "PATCH", "/v1/me/privacy", fay.Token, map[string]any{"request_push": true}, nil, &pv); st != http.StatusOK {
		t.Fatalf("PATCH request_push: %d", st)
	}
	eveChat := directChat(fay.ID, eve.ID)
	if st := s.call(t, "POST", "/v1/chats/"+eveChat+"/messages", eve.Token, map[string]any{"body": "yo"},
		map[string]string{"Idempotency-Key": "e1"}, nil); st != http.StatusCreated {
		t.Fatalf("eve's send: %d", st)
	}
	waitPushFor(t, fcm, "tok-fay", eveChat)
	if e := chatEntry(t, s, fay, eveChat); !e.Request {
		t.Fatalf("eve's chat is no request: %+v", e)
	}
}

// waitPushFor waits for a push to token about chat.
func waitPushFor(t *testing.T, fcm *fcmtest.Server, token, chat string) {
	t.Helper()
	if _, ok := fcm.Wait(waitTimeout, func(rs []fcmtest.Request) bool {
		for _, r := range rs {
			if r.Message.Token == token && r.Message.Data["chat"] == chat {
				return true
			}
		}
		return false
	}); !ok {
		t.Fatalf("no push to %s for %s", token, chat)
	}
}

// accept makes a accept the message request of chat, as an app does when
// the user taps "accept" (a first message from a stranger is a request).
func accept(t *testing.T, s *server, a account, chat string) {
	t.Helper()
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/accept", a.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("%s accepts %s: status %d", a.Username, chat, st)
	}
}

// allowRequestPush opts users into pushes for message requests: tests of
// push mechanics send first messages between strangers.
func allowRequestPush(t *testing.T, s *server, users ...account) {
	t.Helper()
	for _, u := range users {
		if st := s.call(t, "PATCH", "/v1/me/privacy", u.Token, map[string]any{"request_push": true}, nil, nil); st != http.StatusOK {
			t.Fatalf("%s allows request pushes: status %d", u.Username, st)
		}
	}
}
