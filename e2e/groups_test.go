package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
)

type groupView struct {
	GroupID string `json:"group_id"`
	Chat    string `json:"chat"`
	Name    string `json:"name"`
	Members []struct {
		UserID string `json:"user_id"`
		Role   string `json:"role"`
	} `json:"members"`
}

type groupEvent struct {
	Type    string   `json:"type"`
	Op      string   `json:"op"`
	GroupID string   `json:"group_id"`
	Seq     uint64   `json:"seq"`
	Users   []string `json:"users"`
}

func groupEnvelope(gid, cmid, body string) []byte {
	raw, _ := json.Marshal(map[string]any{"to": "group:" + gid, "cmid": cmid, "body": body})
	return raw
}

func onSystem(op string) func(received) bool {
	return func(r received) bool {
		var m struct {
			Type string `json:"type"`
			Body struct {
				Op string `json:"op"`
			} `json:"body"`
		}
		return json.Unmarshal(r.Payload, &m) == nil && m.Type == "system" && m.Body.Op == op
	}
}

// TestGroupLifecycle: a group made over REST carries one gap-free seq for
// messages and changes, reaches every member's devices once, refuses
// non-members, and a removed member stops receiving and loses access.
func TestGroupLifecycle(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")

	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	aPhone.subscribe(t, "users/"+alice.ID+"/#")
	aTab := dialV5(t, wsConn(t, s.addrs.WS, "/mqtt"), alice, "tablet")
	aTab.subscribe(t, "users/"+alice.ID+"/inbox")
	bPhone := dialV3(t, "tcp://"+s.addrs.MQTT, bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/#")
	cPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), carol, "phone")
	cPhone.subscribe(t, "users/"+carol.ID+"/#")
	dPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), dave, "phone")
	dPhone.subscribe(t, "users/"+dave.ID+"/events")

	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "trip", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	if len(g.Members) != 3 || g.Chat != "g:"+g.GroupID || g.Name != "trip" {
		t.Fatalf("group %+v", g)
	}
	inbox := func(u account) string { return "users/" + u.ID + "/inbox" }
	events := func(u account) string { return "users/" + u.ID + "/events" }

	// Everyone sees the creation as seq 1 of the group's chat, and an event.
	for _, d := range []struct {
		box mailbox
		u   account
	}{{aPhone.box, alice}, {bPhone.box, bob}, {cPhone.box, carol}} {
		// The inbox message and the event travel on two topics, in no
		// fixed order between them.
		var sawMsg, sawEvent bool
		for !sawMsg || !sawEvent {
			r := d.box.next(t, "group creation", nil)
			switch r.Topic {
			case inbox(d.u):
				m := r.inbox(t)
				if m.Chat != g.Chat || m.Seq != 1 || m.Type != "system" || sawMsg {
					t.Fatalf("%s: first group message %+v", d.u.Username, m)
				}
				sawMsg = true
			case events(d.u):
				var ev groupEvent
				if err := json.Unmarshal(r.Payload, &ev); err != nil || ev.Type != "group" || ev.Op != "created" || ev.Seq != 1 || sawEvent {
					t.Fatalf("%s: group event %+v %v", d.u.Username, ev, err)
				}
				sawEvent = true
			}
		}
	}
	aTab.box.next(t, "tablet created", onTopic(inbox(alice)))

	// Messages from members of either protocol version reach every device once.
	if rc, err := aPhone.publish(t, "users/"+alice.ID+"/send", groupEnvelope(g.GroupID, "g1", "hello all")); rc != 0 || err != nil {
		t.Fatalf("group send: 0x%02x %v", rc, err)
	}
	bPhone.publish(t, "users/"+bob.ID+"/send", groupEnvelope(g.GroupID, "g2", "hi"))
	for _, d := range []struct {
		name string
		box  mailbox
		u    account
	}{{"alice phone", aPhone.box, alice}, {"alice tablet", aTab.box, alice}, {"bob", bPhone.box, bob}, {"carol", cPhone.box, carol}} {
		for want := uint64(2); want <= 3; want++ {
			m := d.box.next(t, d.name+" group message", onTopic(inbox(d.u))).inbox(t)
			if m.Chat != g.Chat || m.Seq != want {
				t.Fatalf("%s: got %s seq %d, want seq %d", d.name, m.Chat, m.Seq, want)
			}
		}
	}

	// A non-member is refused and reads nothing.
	if rc, _ := dPhone.publish(t, "users/"+dave.ID+"/send", groupEnvelope(g.GroupID, "d1", "let me in")); rc != 0x87 {
		t.Fatalf("non-member send: 0x%02x, want 0x87", rc)
	}
	if ev := dPhone.box.next(t, "dave error", onTopic(events(dave))).event(t); ev.Code != "not_authorized" {
		t.Fatalf("dave error event %+v", ev)
	}
	if st := s.call(t, "GET", "/v1/chats/"+g.Chat+"/messages", dave.Token, nil, nil, nil); st != http.StatusForbidden {
		t.Fatalf("non-member history: %d", st)
	}
	if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, dave.Token, nil, nil, nil); st != http.StatusNotFound {
		t.Fatalf("non-member get group: %d", st)
	}

	// Roles: a member may not rename; made admin, it may.
	if st := s.call(t, "PATCH", "/v1/groups/"+g.GroupID, bob.Token, map[string]string{"name": "x"}, nil, nil); st != http.StatusForbidden {
		t.Fatalf("member rename: %d", st)
	}
	if st := s.call(t, "PATCH", "/v1/groups/"+g.GroupID+"/members/"+bob.ID, alice.Token, map[string]string{"role": "admin"}, nil, nil); st != http.StatusOK {
		t.Fatalf("make admin: %d", st)
	}
	if st := s.call(t, "PATCH", "/v1/groups/"+g.GroupID, bob.Token, map[string]string{"name": "summer trip"}, nil, &g); st != http.StatusOK || g.Name != "summer trip" {
		t.Fatalf("admin rename: %d %+v", st, g)
	}

	// Removing carol: she learns it, then receives nothing more from the group.
	if st := s.call(t, "DELETE", "/v1/groups/"+g.GroupID+"/members/"+carol.ID, bob.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("remove carol: %d", st)
	}
	cPhone.box.next(t, "carol removal notice", onSystem("member_removed"))
	aPhone.send(t, bob.ID, "after-removal-1to1", "unrelated")
	if rc, err := aPhone.publish(t, "users/"+alice.ID+"/send", groupEnvelope(g.GroupID, "g3", "without carol")); rc != 0 || err != nil {
		t.Fatalf("group send: 0x%02x %v", rc, err)
	}
	if _, err := aPhone.publish(t, "users/"+alice.ID+"/send", envelope(carol.ID, "marker", "direct to carol")); err != nil {
		t.Fatal(err)
	}
	if m := cPhone.box.next(t, "carol's next message", onTopic(inbox(carol))).inbox(t); m.CMID != "marker" {
		t.Fatalf("removed member received %+v before the marker", m)
	}
	if st := s.call(t, "GET", "/v1/chats/"+g.Chat+"/messages", carol.Token, nil, nil, nil); st != http.StatusForbidden {
		t.Fatalf("removed member history: %d", st)
	}
	if rc, _ := cPhone.publish(t, "users/"+carol.ID+"/send", groupEnvelope(g.GroupID, "c1", "still here?")); rc != 0x87 {
		t.Fatalf("removed member send: 0x%02x", rc)
	}

	// One gap-free seq for messages and changes alike.
	page := s.history(t, alice, g.Chat, "?after=0&limit=200")
	for i, m := range page.Messages {
		if m.Seq != uint64(i+1) {
			t.Fatalf("history seq %d at %d", m.Seq, i)
		}
	}
	if n := len(page.Messages); n != 7 { // created, g1, g2, role, rename, removal, g3
		t.Fatalf("history holds %d messages, want 7", n)
	}

	// Clear refusals.
	tests := []struct {
		name, method, path string
		token              string
		body               any
		status             int
	}{
		{"empty name", "POST", "/v1/groups", alice.Token, map[string]any{"name": " "}, 400},
		{"unknown member", "POST", "/v1/groups", alice.Token, map[string]any{"name": "x", "members": []string{"aaaaaaaaaaaaaaaaaaaa"}}, 404},
		{"owner cannot leave", "DELETE", "/v1/groups/" + g.GroupID + "/members/" + alice.ID, alice.Token, nil, 409},
		{"admin cannot delete", "DELETE", "/v1/groups/" + g.GroupID, bob.Token, nil, 403},
		{"bad role", "PATCH", "/v1/groups/" + g.GroupID + "/members/" + bob.ID, alice.Token, map[string]string{"role": "king"}, 400},
		{"unknown group", "GET", "/v1/groups/zzzzzzzzzzzzzzzzzzzz", alice.Token, nil, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if st := s.call(t, tc.method, tc.path, tc.token, tc.body, nil, &e); st != tc.status || e.Error.Message == "" {
				t.Fatalf("%s %s: %d %+v, want %d", tc.method, tc.path, st, e, tc.status)
			}
		})
	}

	// Deleting: members are told, and the group is gone for everyone.
	if st := s.call(t, "DELETE", "/v1/groups/"+g.GroupID, alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	bPhone.box.next(t, "bob deletion notice", onSystem("deleted"))
	if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, bob.Token, nil, nil, nil); st != http.StatusNotFound {
		t.Fatalf("deleted group: %d", st)
	}
}

// TestGroupSizeLimit: limits.max_group_members (owner included) is
// enforced on create and on add, with 409 and a clear message.
func TestGroupSizeLimit(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Limits.MaxGroupMembers = 3 })
	owner := s.register(t, "owner")
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, s.register(t, fmt.Sprintf("member%d", i)).ID)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st := s.call(t, "POST", "/v1/groups", owner.Token, map[string]any{"name": "big", "members": ids}, nil, &e); st != http.StatusConflict || e.Error.Message == "" {
		t.Fatalf("create over the limit: %d %+v", st, e)
	}
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", owner.Token, map[string]any{"name": "ok", "members": ids[:2]}, nil, &g); st != http.StatusCreated || len(g.Members) != 3 {
		t.Fatalf("create at the limit: %d %+v", st, g)
	}
	if st := s.call(t, "POST", "/v1/groups/"+g.GroupID+"/members", owner.Token, map[string]any{"user_ids": ids[2:]}, nil, &e); st != http.StatusConflict {
		t.Fatalf("add over the limit: %d %+v", st, e)
	}
	// Adding someone already in is a harmless no-op.
	if st := s.call(t, "POST", "/v1/groups/"+g.GroupID+"/members", owner.Token, map[string]any{"user_ids": ids[:1]}, nil, &g); st != http.StatusOK || len(g.Members) != 3 {
		t.Fatalf("re-add: %d %+v", st, g)
	}
}
