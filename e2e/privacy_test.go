package e2e

import (
	"net/http"
	"testing"
	"time"
)

type privacyView struct {
	Presence string `json:"presence"`
}

// TestPresenceSettingNobody: a user whose presence setting is "nobody" is
// seen by no one but themself: REST answers 403 as for a stranger, new
// subscriptions are refused and an existing one receives nothing more.
// "contacts" (the default) restores the shared-chat rule.
func TestPresenceSettingNobody(t *testing.T) {
	s := startServer(t, presenceConfig(time.Minute))
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	befriend(t, s, alice, bob)
	befriend(t, s, carol, bob) // carol's messages to bob are the marker
	var pv privacyView
	if st := s.call(t, "GET", "/v1/me/privacy", alice.Token, nil, nil, &pv); st != http.StatusOK || pv.Presence != "contacts" {
		t.Fatalf("default settings: %d %+v", st, pv)
	}
	self := connectDevice(t, s, 5, alice, "self", 30) // alice watches herself throughout
	if rc := self.subscribe("presence/" + alice.ID); rc != 1 {
		t.Fatalf("alice's own SUBACK = 0x%02x", rc)
	}
	waitPresence(t, self.box, alice.ID, "online", 1)
	watch := dialDevice(t, s, "v5", bob, "watch") // users/{bob}/# for the marker
	presencePath := "/v1/presence/" + alice.ID
	bobSub := connectDevice(t, s, 5, bob, "presence", 30)
	if rc := bobSub.subscribe("presence/" + alice.ID); rc != 1 {
		t.Fatalf("bob's SUBACK before = 0x%02x", rc)
	}
	waitPresence(t, bobSub.box, alice.ID, "online", 1)
	if st := s.call(t, "GET", presencePath, bob.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("bob's GET before: %d", st)
	}

	for _, bad := range []any{map[string]string{"presence": "friends"}, map[string]string{}, map[string]any{"presence": "nobody", "x": 1}} {
		if st := s.call(t, "PATCH", "/v1/me/privacy", alice.Token, bad, nil, nil); st != http.StatusBadRequest {
			t.Fatalf("PATCH %v: %d, want 400", bad, st)
		}
	}
	if st := s.call(t, "PATCH", "/v1/me/privacy", alice.Token, map[string]string{"presence": "nobody"}, nil, &pv); st != http.StatusOK || pv.Presence != "nobody" {
		t.Fatalf("PATCH nobody: %d %+v", st, pv)
	}
	if st := s.call(t, "GET", presencePath, bob.Token, nil, nil, nil); st != http.StatusForbidden {
		t.Fatalf("bob's GET after nobody: %d, want 403", st)
	}
	if st := s.call(t, "GET", presencePath, alice.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("alice's own GET: %d", st)
	}
	if rc := connectDevice(t, s, 5, bob, "late", 30).subscribe("presence/" + alice.ID); rc != refused(5) {
		t.Fatalf("bob's new SUBACK after nobody = 0x%02x, want refused", rc)
	}
	// alice changes twice; once she saw the second change herself the
	// first was delivered to (or withheld from) every subscriber, and
	// carol's marker to bob travels behind it.
	connectDevice(t, s, 5, alice, "laptop", 30)
	waitPresence(t, self.box, alice.ID, "online", 2)
	connectDevice(t, s, 5, alice, "tablet", 30)
	waitPresence(t, self.box, alice.ID, "online", 3)
	if st := s.call(t, "POST", "/v1/chats/"+directChat(carol.ID, bob.ID)+"/messages", carol.Token,
		map[string]any{"body": "marker"}, map[string]string{"Idempotency-Key": "marker"}, nil); st != http.StatusCreated {
		t.Fatalf("marker: %d", st)
	}
	watch.next(t, "the marker", func(r received) bool {
		return r.Topic == "users/"+bob.ID+"/inbox" && r.inbox(t).CMID == "marker"
	})
	select {
	case r := <-bobSub.box:
		t.Fatalf("bob received alice's presence after she chose nobody: %s %s", r.Topic, r.Payload)
	default:
	}

	if st := s.call(t, "PATCH", "/v1/me/privacy", alice.Token, map[string]string{"presence": "contacts"}, nil, &pv); st != http.StatusOK || pv.Presence != "contacts" {
		t.Fatalf("PATCH contacts: %d %+v", st, pv)
	}
	if st := s.call(t, "GET", presencePath, bob.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("bob's GET after contacts: %d", st)
	}
	if st := s.call(t, "GET", "/v1/presence/"+alice.ID, carol.Token, nil, nil, nil); st != http.StatusForbidden {
		t.Fatalf("carol (no shared chat with alice) GET: %d, want 403", st)
	}
}
