package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
)

type inviteList struct {
	Invites []struct {
		GroupID string `json:"group_id"`
		From    string `json:"from"`
	} `json:"invites"`
}

func (s *server) invites(t *testing.T, a account) inviteList {
	t.Helper()
	var out inviteList
	if st := s.call(t, "GET", "/v1/invites", a.Token, nil, nil, &out); st != http.StatusOK {
		t.Fatalf("GET /v1/invites: %d", st)
	}
	return out
}

func isMember(g groupView, uid string) bool {
	for _, m := range g.Members {
		if m.UserID == uid {
			return true
		}
	}
	return false
}

// TestGroupInviteConsent: with limits.group_invites consent (the default),
// someone put in a group by a user they share no accepted chat with is
// invited (an "invited" event, GET /v1/invites) and joins only on
// accepting; until then they get nothing of the group and the inviter
// none of their presence. A contact is added at once, and someone sharing
// a group counts as a contact. Declined invitations are gone. Users who
// block the inviter are neither added nor invited.
func TestGroupInviteConsent(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		presenceConfig(time.Minute)(c)
		c.Limits.GroupInvites = "consent"
	})
	alice, bob, carol, dave, eve := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"),
		s.register(t, "dave"), s.register(t, "eve")
	befriend(t, s, alice, bob) // bob accepted alice's chat: a contact
	carolDev := dialDevice(t, s, "v5", carol, "phone")
	connectDevice(t, s, 5, alice, "presence", 30)

	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "trip", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	if !isMember(g, bob.ID) || isMember(g, carol.ID) {
		t.Fatalf("group %+v: want bob (a contact) in and carol (a stranger) invited", g)
	}
	ev := carolDev.event(t, "group")
	if ev.Op != "invited" || ev.GroupID != g.GroupID {
		t.Fatalf("carol's event %+v, want invited to %s", ev, g.GroupID)
	}
	if inv := s.invites(t, carol); len(inv.Invites) != 1 || inv.Invites[0].GroupID != g.GroupID || inv.Invites[0].From != alice.ID {
		t.Fatalf("carol's invites: %+v", inv)
	}
	if st := s.call(t, "GET", "/v1/chats/"+g.Chat+"/messages", carol.Token, nil, nil, nil); st != http.StatusForbidden {
		t.Fatalf("invited carol reads the group: %d, want 403", st)
	}
	if st := presenceStatus(t, s, carol, alice); st != http.StatusForbidden {
		t.Fatalf("invited carol asks alice's presence: %d, want 403", st)
	}

	// Accepting makes carol a member, and alice's contact.
	var joined groupView
	if st := s.call(t, "POST", "/v1/invites/"+g.GroupID+"/accept", carol.Token, nil, nil, &joined); st != http.StatusOK || !isMember(joined, carol.ID) {
		t.Fatalf("accept: %d %+v", st, joined)
	}
	if inv := s.invites(t, carol); len(inv.Invites) != 0 {
		t.Fatalf("carol's invites after accepting: %+v", inv)
	}
	if st := s.call(t, "POST", "/v1/invites/"+g.GroupID+"/accept", carol.Token, nil, nil, nil); st != http.StatusNotFound {
		t.Fatalf("second accept: %d, want 404", st)
	}
	if st := presenceStatus(t, s, carol, alice); st != http.StatusOK {
		t.Fatalf("member carol asks alice's presence: %d, want 200", st)
	}
	if got := s.history(t, carol, g.Chat, "?limit=10").Messages; len(got) == 0 {
		t.Fatal("member carol sees no history of the group")
	}
	var h groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "second", "members": []string{carol.ID}}, nil, &h); st != http.StatusCreated || !isMember(h, carol.ID) {
		t.Fatalf("a group with carol (shares a group with alice now): %d %+v", st, h)
	}

	// Adding dave invites him; he declines.
	if st := s.call(t, "POST", "/v1/groups/"+g.GroupID+"/members", alice.Token, map[string]any{"user_ids": []string{dave.ID}}, nil, &g); st != http.StatusOK || isMember(g, dave.ID) {
		t.Fatalf("add dave: %d %+v", st, g)
	}
	if inv := s.invites(t, dave); len(inv.Invites) != 1 {
		t.Fatalf("dave's invites: %+v", inv)
	}
	if st := s.call(t, "DELETE", "/v1/invites/"+g.GroupID, dave.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("decline: %d", st)
	}
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/v1/invites/" + g.GroupID},
		{"POST", "/v1/invites/" + g.GroupID + "/accept"},
	} {
		if st := s.call(t, c.method, c.path, dave.Token, nil, nil, nil); st != http.StatusNotFound {
			t.Fatalf("%s %s after declining: %d, want 404", c.method, c.path, st)
		}
	}

	// Over MQTT: fay accepts with a group operation; its retry is already
	// applied. A decline of nothing is too.
	fay := s.register(t, "fay")
	fayDev := dialDevice(t, s, "v5", fay, "phone")
	if st := s.call(t, "POST", "/v1/groups/"+g.GroupID+"/members", alice.Token, map[string]any{"user_ids": []string{fay.ID}}, nil, &g); st != http.StatusOK || isMember(g, fay.ID) {
		t.Fatalf("add fay: %d %+v", st, g)
	}
	if ev := fayDev.event(t, "group"); ev.Op != "invited" || ev.GroupID != g.GroupID {
		t.Fatalf("fay's event %+v", ev)
	}
	for i, want := range []bool{false, true} {
		fayDev.wantRC(t, fayDev.request(t, "groups", map[string]any{"op_id": "acc", "op": "accept_invite", "group_id": g.GroupID}), 0)
		ev := fayDev.event(t, "group_op")
		if !ev.OK || ev.AlreadyApplied != want || ev.Group == nil || !isMember(*ev.Group, fay.ID) {
			t.Fatalf("accept_invite #%d over MQTT: %+v", i+1, ev)
		}
	}
	fayDev.wantRC(t, fayDev.request(t, "groups", map[string]any{"op_id": "dec", "op": "decline_invite", "group_id": g.GroupID}), 0)
	if ev := fayDev.event(t, "group_op"); !ev.OK || !ev.AlreadyApplied {
		t.Fatalf("decline_invite without an invitation: %+v", ev)
	}

	// eve is blocked by dave: her group neither holds nor invites him.
	blockUser(t, s, dave, eve)
	var e groupView
	if st := s.call(t, "POST", "/v1/groups", eve.Token, map[string]any{"name": "spam", "members": []string{dave.ID}}, nil, &e); st != http.StatusCreated || isMember(e, dave.ID) {
		t.Fatalf("eve's group: %d %+v", st, e)
	}
	if inv := s.invites(t, dave); len(inv.Invites) != 0 {
		t.Fatalf("dave was invited by eve, whom he blocks: %+v", inv)
	}
}
