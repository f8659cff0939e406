package e2e

import (
	"net/http"
	"testing"
)

// TestSubtreeIsolation: a user cannot subscribe to or publish under another
// user's subtree, cannot escape with wildcards, cannot read history of a chat
// it is not in, and refused publishes reach nobody.
func TestSubtreeIsolation(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")

	a5 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "v5")
	a3 := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "v3")
	a5.subscribe(t, "users/"+alice.ID+"/events")
	bobDev := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobDev.subscribe(t, "users/"+bob.ID+"/#")

	refusedFilters := []string{
		"users/" + bob.ID + "/inbox",
		"users/" + bob.ID + "/#",
		"users/+/inbox",
		"users/+/#",
		"users/#",
		"#",
		"+/" + alice.ID + "/inbox",
		"users/" + alice.ID + "/send",
		"presence/+",
		"presence/#",
		"presence/" + bob.ID, // no shared chat yet
		"$SYS/#",
		"$share/g/users/" + alice.ID + "/inbox",
		"other/topic",
	}
	for _, f := range refusedFilters {
		t.Run("subscribe "+f, func(t *testing.T) {
			if rc := a5.subscribe(t, f); rc[0] != 0x87 {
				t.Errorf("v5 SUBACK for %s = 0x%02x, want 0x87", f, rc[0])
			}
			if rc := a3.subscribe(t, f); rc != 0x80 {
				t.Errorf("3.1.1 SUBACK for %s = 0x%02x, want 0x80", f, rc)
			}
		})
	}
	for _, f := range []string{"users/" + alice.ID + "/inbox", "users/" + alice.ID + "/#", "presence/" + alice.ID} {
		if rc := a5.subscribe(t, f); rc[0] != 1 {
			t.Errorf("v5 SUBACK for own %s = 0x%02x, want 1", f, rc[0])
		}
	}

	refusedTopics := []string{
		"users/" + bob.ID + "/send",
		"users/" + bob.ID + "/inbox",
		"users/" + alice.ID + "/inbox",
		"users/" + alice.ID + "/events",
		"presence/" + alice.ID,
		"other/topic",
	}
	for _, topic := range refusedTopics {
		t.Run("publish "+topic, func(t *testing.T) {
			rc, err := a5.publish(t, topic, envelope(bob.ID, "forged", "forged"))
			if rc != 0x87 || err == nil {
				t.Fatalf("v5 PUBACK for %s = 0x%02x (%v), want 0x87", topic, rc, err)
			}
			ev := a5.box.next(t, "error event", onEvent(alice.ID, "error")).event(t)
			if ev.Type != "error" || ev.Code != "not_authorized" || ev.ReasonCode != 0x87 {
				t.Fatalf("error event %+v", ev)
			}
			// 3.1.1: the PUBACK cannot carry a code; the connection stays and
			// the refusal arrives as an event.
			a3.publish(t, topic, envelope(bob.ID, "forged3", "forged"))
			ev = a5.box.next(t, "error event for 3.1.1 publish", onEvent(alice.ID, "error")).event(t)
			if ev.Code != "not_authorized" {
				t.Fatalf("error event %+v", ev)
			}
		})
	}
	if !a3.c.IsConnectionOpen() {
		t.Fatal("3.1.1 connection was dropped by refused publishes")
	}

	// Nothing forged reached bob: the next thing he sees is a real message.
	a3.send(t, bob.ID, "real", "real")
	got := bobDev.box.next(t, "bob's first message", nil)
	if m := got.inbox(t); got.Topic != "users/"+bob.ID+"/inbox" || m.CMID != "real" || m.Seq != 1 {
		t.Fatalf("bob first received %s %s", got.Topic, got.Payload)
	}

	// Presence of a user one shares a chat with becomes visible, once the
	// first message (a request to bob) is accepted.
	if st := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, bob.ID)+"/accept", bob.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("bob accepts alice's request: %d", st)
	}
	if rc := a5.subscribe(t, "presence/"+bob.ID); rc[0] != 1 {
		t.Errorf("presence of a chat partner refused: 0x%02x", rc[0])
	}
	if rc := a5.subscribe(t, "presence/"+carol.ID); rc[0] != 0x87 {
		t.Errorf("presence of a stranger allowed: 0x%02x", rc[0])
	}

	// History: only members read a chat; a string that is no chat id
	// names nothing.
	for _, tc := range []struct {
		chat   string
		status int
		code   string
	}{
		{directChat(bob.ID, carol.ID), http.StatusForbidden, "not_authorized"},
		{"d:" + bob.ID, http.StatusNotFound, "not_found"},
		{"g:whatever", http.StatusNotFound, "not_found"},
		{"nonsense", http.StatusNotFound, "not_found"},
	} {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if st := s.call(t, "GET", "/v1/chats/"+tc.chat+"/messages", alice.Token, nil, nil, &e); st != tc.status || e.Error.Code != tc.code {
			t.Errorf("history of %s: status %d %+v, want %d %s", tc.chat, st, e, tc.status, tc.code)
		}
	}
}
