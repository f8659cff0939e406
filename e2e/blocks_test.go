package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/ids"
)

type blockList struct {
	Blocks []struct {
		UserID    string `json:"user_id"`
		CreatedAt string `json:"created_at"`
	} `json:"blocks"`
}

// blockUser makes a block b and checks the answer.
func blockUser(t *testing.T, s *server, a, b account) {
	t.Helper()
	var out struct {
		UserID string `json:"user_id"`
	}
	if st := s.call(t, "POST", "/v1/blocks", a.Token, map[string]string{"user_id": b.ID}, nil, &out); st != http.StatusOK || out.UserID != b.ID {
		t.Fatalf("POST /v1/blocks %s: %d %+v", b.Username, st, out)
	}
}

// waitMarker sends a 1:1 message from `from` to d's user over REST and
// waits for it on d, failing on anything bad seen before it. Everything
// published to d's connection before the marker was sent arrives before
// it, so "not before the marker" means "not at all".
func waitMarker(t *testing.T, s *server, d *device, from account, cmid string, bad func(received) error) {
	t.Helper()
	if st := s.call(t, "POST", "/v1/chats/"+directChat(from.ID, d.acct.ID)+"/messages", from.Token,
		map[string]any{"body": cmid}, map[string]string{"Idempotency-Key": cmid}, nil); st != http.StatusCreated {
		t.Fatalf("marker %s: %d", cmid, st)
	}
	inbox := "users/" + d.acct.ID + "/inbox"
	for {
		r := d.next(t, "marker "+cmid, func(received) bool { return true })
		if err := bad(r); err != nil {
			t.Fatal(err)
		}
		if r.Topic == inbox && r.inbox(t).CMID == cmid {
			return
		}
	}
}

// TestBlockedUserReachesNothing: once alice blocks mallory, mallory's 1:1
// messages (MQTT 5, MQTT 3.1.1 and REST), typing notices, group
// invitations and presence lookups stop reaching alice, while everything
// mallory sees of her own actions stays as before: PUBACK 0, 201, her own
// copies, her history. Unblocking restores delivery.
func TestBlockedUserReachesNothing(t *testing.T) {
	s := startServer(t, presenceConfig(time.Minute))
	alice, mallory, carol := s.register(t, "alice"), s.register(t, "mallory"), s.register(t, "carol")
	befriend(t, s, mallory, alice) // a message before the block stays visible
	chatID := directChat(alice.ID, mallory.ID)
	aliceDev := dialDevice(t, s, "v5", alice, "phone")
	connectDevice(t, s, 5, alice, "presence", 30) // alice is online
	m5 := dialDevice(t, s, "v5", mallory, "phone")
	m3 := dialDevice(t, s, "v3", mallory, "old")
	// Before the block mallory sees alice's presence (they share a chat).
	if st := s.call(t, "GET", "/v1/presence/"+alice.ID, mallory.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("presence before the block: %d", st)
	}

	blockUser(t, s, alice, mallory)
	blockUser(t, s, alice, mallory) // idempotent
	var list blockList
	if st := s.call(t, "GET", "/v1/blocks", alice.Token, nil, nil, &list); st != http.StatusOK ||
		len(list.Blocks) != 1 || list.Blocks[0].UserID != mallory.ID {
		t.Fatalf("GET /v1/blocks: %d %+v", st, list)
	}
	if st := s.call(t, "GET", "/v1/blocks", mallory.Token, nil, nil, &list); st != http.StatusOK || len(list.Blocks) != 0 {
		t.Fatalf("mallory's blocks: %d %+v", st, list)
	}

	// Sends: acknowledged as usual, mallory's devices get their copies.
	m5.wantRC(t, m5.request(t, "send", envelope(alice.ID, "b-v5", "over v5")), 0)
	m3.request(t, "send", envelope(alice.ID, "b-v3", "over v3"))
	var sent inboxMsg
	if st := s.call(t, "POST", "/v1/chats/"+chatID+"/messages", mallory.Token, map[string]any{"body": "over rest"},
		map[string]string{"Idempotency-Key": "b-rest"}, &sent); st != http.StatusCreated || sent.Seq == 0 {
		t.Fatalf("REST send to a blocker: %d %+v", st, sent)
	}
	for _, cmid := range []string{"b-v5", "b-v3", "b-rest"} {
		m5.next(t, "own copy of "+cmid, func(r received) bool {
			return r.Topic == "users/"+mallory.ID+"/inbox" && r.inbox(t).CMID == cmid
		})
	}
	// Typing: accepted (PUBACK 0, no error event), not delivered.
	m5.wantRC(t, m5.request(t, "typing", map[string]string{"chat": chatID}), 0)

	waitMarker(t, s, aliceDev, carol, "marker-1", func(r received) error {
		if r.Topic == "users/"+alice.ID+"/inbox" && r.inbox(t).From == mallory.ID {
			return fmt.Errorf("alice received mallory's message %s", r.Payload)
		}
		if r.Topic == "users/"+alice.ID+"/events" {
			if e := r.event(t); e.Type == "typing" && e.User == mallory.ID {
				return fmt.Errorf("alice received mallory's typing %s", r.Payload)
			}
		}
		return nil
	})
	for _, d := range []*device{m5, m3} {
		for _, r := range d.stash {
			if r.Topic == "users/"+mallory.ID+"/events" && r.event(t).Type == "error" {
				t.Fatalf("mallory was told something: %s", r.Payload)
			}
		}
	}

	// History: mallory sees all four of her messages, alice only the one
	// sent before the block; alice's chat list neither shows nor counts
	// the hidden ones.
	if got := s.history(t, mallory, chatID, "?limit=10").Messages; len(got) != 4 {
		t.Fatalf("mallory's history has %d messages, want 4: %+v", len(got), got)
	}
	got := s.history(t, alice, chatID, "?limit=10").Messages
	if len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("alice's history = %+v, want only the message before the block", got)
	}
	// A full page of hidden messages still says there is more before it.
	if p := s.history(t, alice, chatID, "?limit=2"); len(p.Messages) != 0 || p.Next == nil {
		t.Fatalf("alice's newest page of 2 = %+v, want empty with a next", p)
	}
	for _, c := range s.allChats(t, alice, nil).Chats {
		if c.Chat != chatID {
			continue
		}
		if c.Unread != 1 || c.LastMessage == nil || c.LastMessage.Seq != 1 {
			t.Fatalf("alice's chat list entry = %+v (last %+v), want unread 1 and the first message last", c, c.LastMessage)
		}
	}

	// Presence: refused both ways, over REST and MQTT.
	for _, pair := range [][2]account{{mallory, alice}, {alice, mallory}} {
		if st := s.call(t, "GET", "/v1/presence/"+pair[1].ID, pair[0].Token, nil, nil, nil); st != http.StatusForbidden {
			t.Fatalf("%s asks %s's presence: %d, want 403", pair[0].Username, pair[1].Username, st)
		}
	}
	var many struct {
		Presence []struct {
			UserID string `json:"user_id"`
		} `json:"presence"`
	}
	if st := s.call(t, "GET", "/v1/presence?ids="+alice.ID, mallory.Token, nil, nil, &many); st != http.StatusOK || len(many.Presence) != 0 {
		t.Fatalf("GET /v1/presence?ids=alice by mallory: %d %+v", st, many)
	}
	if rc := connectDevice(t, s, 5, mallory, "watch", 30).subscribe("presence/" + alice.ID); rc != refused(5) {
		t.Fatalf("mallory's SUBACK to alice's presence = 0x%02x, want refused", rc)
	}

	// Invitations: answered as usual, alice is not in the group.
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", mallory.Token, map[string]any{"name": "trap", "members": []string{alice.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	if st := s.call(t, "POST", "/v1/groups/"+g.GroupID+"/members", mallory.Token, map[string]any{"user_ids": []string{alice.ID}}, nil, &g); st != http.StatusOK {
		t.Fatalf("add alice: %d", st)
	}
	for _, m := range g.Members {
		if m.UserID == alice.ID {
			t.Fatalf("alice was put in mallory's group: %+v", g)
		}
	}
	if gs := s.myGroups(t, alice); len(gs) != 0 {
		t.Fatalf("alice's groups: %+v", gs)
	}

	// Unblock: delivery and presence come back; a second unblock is 404.
	if st := s.call(t, "DELETE", "/v1/blocks/"+mallory.ID, alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("unblock: %d", st)
	}
	if st := s.call(t, "DELETE", "/v1/blocks/"+mallory.ID, alice.Token, nil, nil, nil); st != http.StatusNotFound {
		t.Fatalf("second unblock: %d", st)
	}
	m5.wantRC(t, m5.request(t, "send", envelope(alice.ID, "after", "after the unblock")), 0)
	if m := aliceDev.inbox(t); m.CMID != "after" || m.From != mallory.ID {
		t.Fatalf("alice got %+v, want mallory's message after the unblock", m)
	}
	if st := s.call(t, "GET", "/v1/presence/"+alice.ID, mallory.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("presence after the unblock: %d", st)
	}
}

// TestBlockRequests: bad block requests are refused with a clear error;
// blocking any well-formed id is accepted, existing or not, so the answer
// tells nothing about who exists.
func TestBlockRequests(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Limits.MaxBlocks = 2 })
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"self", map[string]string{"user_id": alice.ID}, http.StatusBadRequest, "invalid_payload"},
		{"not an id", map[string]string{"user_id": "bob"}, http.StatusBadRequest, "invalid_payload"},
		{"no id", map[string]string{}, http.StatusBadRequest, "invalid_payload"},
		{"unknown field", map[string]string{"user_id": bob.ID, "x": "y"}, http.StatusBadRequest, "invalid_payload"},
	} {
		e.Error.Code = ""
		if st := s.call(t, "POST", "/v1/blocks", alice.Token, tc.body, nil, &e); st != tc.status || e.Error.Code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, st, e.Error.Code, tc.status, tc.code)
		}
	}
	if st := s.call(t, "POST", "/v1/blocks", "", map[string]string{"user_id": bob.ID}, nil, nil); st != http.StatusUnauthorized {
		t.Errorf("unauthenticated: %d", st)
	}
	// An unknown but well-formed id: same answer as a real user.
	blockUser(t, s, alice, account{ID: ids.NewUserID(), Username: "ghost"})
	blockUser(t, s, alice, bob)
	if st := s.call(t, "POST", "/v1/blocks", alice.Token, map[string]string{"user_id": carol.ID}, nil, &e); st != http.StatusConflict {
		t.Fatalf("past limits.max_blocks: %d %+v", st, e)
	}
	blockUser(t, s, alice, bob) // already blocked: still fine at the limit
	if st := s.call(t, "DELETE", "/v1/blocks/nonsense", alice.Token, nil, nil, nil); st != http.StatusNotFound {
		t.Fatalf("unblock of a non-id: %d", st)
	}
}
