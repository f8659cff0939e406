package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/services/chat"
)

// lifecycleMsg is a message as history shows it, with its lifecycle state.
type lifecycleMsg struct {
	inboxMsg
	EditedAt  string `json:"edited_at"`
	Deleted   bool   `json:"deleted"`
	Reactions []struct {
		Emoji string `json:"emoji"`
		Count int    `json:"count"`
		Mine  *bool  `json:"mine"`
	} `json:"reactions"`
	ReplyTo        uint64 `json:"reply_to"`
	ReplyToPreview *struct {
		Seq     uint64  `json:"seq"`
		From    string  `json:"from"`
		Excerpt *string `json:"excerpt"`
	} `json:"reply_to_preview"`
	Change *struct {
		Kind  string `json:"kind"`
		Seq   uint64 `json:"seq"`
		Emoji string `json:"emoji"`
	} `json:"change"`
}

type changeAnswer struct {
	Chat      string `json:"chat"`
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	SentAt    string `json:"sent_at"`
	Duplicate bool   `json:"duplicate"`
}

type errorAnswer struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// message reads seq of chat as a reads it.
func (s *server) message(t *testing.T, a account, chatID string, seq uint64) lifecycleMsg {
	t.Helper()
	var page struct {
		Messages []lifecycleMsg `json:"messages"`
	}
	if st := s.call(t, "GET", fmt.Sprintf("/v1/chats/%s/messages?before=%d&limit=1", chatID, seq+1), a.Token, nil, nil, &page); st != http.StatusOK || len(page.Messages) != 1 {
		t.Fatalf("history of %s at %d: status %d, %d messages", chatID, seq, st, len(page.Messages))
	}
	return page.Messages[0]
}

// change makes a REST change and decodes its answer (a changeAnswer on
// 200, an errorAnswer otherwise).
func (s *server) change(t *testing.T, a account, method, path, key string, body any) (int, changeAnswer, errorAnswer) {
	t.Helper()
	var raw json.RawMessage
	h := map[string]string{}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	st := s.call(t, method, path, a.Token, body, h, &raw)
	var ok changeAnswer
	var bad errorAnswer
	if st == http.StatusOK {
		if err := json.Unmarshal(raw, &ok); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal(raw, &bad); err != nil {
		t.Fatalf("%s %s: %d %s", method, path, st, raw)
	}
	return st, ok, bad
}

func reactionPath(chatID string, seq uint64, emoji string) string {
	return fmt.Sprintf("/v1/chats/%s/messages/%d/reactions/%s", chatID, seq, url.PathEscape(emoji))
}

// TestMessageLifecycle edits, deletes and reacts over MQTT (5 and 3.1.1)
// and REST in a group, and checks what members receive live, what history
// shows, and what a device that was offline gets through sync.
func TestMessageLifecycle(t *testing.T) {
	const window = time.Second
	s := startServer(t, func(c *config.Config) { c.Limits.EditWindow = window })
	alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "g", "members": []string{bob.ID, carol.ID, dave.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	to := "group:" + g.GroupID

	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	aPhone.subscribe(t, "users/"+alice.ID+"/#")
	bPhone := dialV3(t, "tcp://"+s.addrs.MQTT, bob, "phone") // a 3.1.1 client
	bPhone.subscribe(t, "users/"+bob.ID+"/#")
	publish := func(c interface {
		publish(*testing.T, string, []byte)
	}, uid string, v map[string]any) {
		raw, _ := json.Marshal(v)
		c.publish(t, "users/"+uid+"/send", raw)
	}
	liveChange := func(box mailbox, kind string, seq uint64) lifecycleMsg {
		t.Helper()
		r := box.next(t, kind+" of "+fmt.Sprint(seq), func(r received) bool {
			var m lifecycleMsg
			return strings.HasSuffix(r.Topic, "/inbox") && json.Unmarshal(r.Payload, &m) == nil &&
				m.Change != nil && m.Change.Kind == kind && m.Change.Seq == seq
		})
		var m lifecycleMsg
		_ = json.Unmarshal(r.Payload, &m)
		return m
	}

	// Bob (3.1.1) writes and fixes a message; alice's phone receives the edit.
	publish(bPhone, bob.ID, map[string]any{"to": to, "cmid": "b1", "body": "helo all"})
	orig := aPhone.box.next(t, "bob's message", onTopic("users/"+alice.ID+"/inbox")).inbox(t)
	publish(bPhone, bob.ID, map[string]any{"to": to, "cmid": "b1-edit", "edit": map[string]any{"seq": orig.Seq}, "body": "hello all"})
	edit := liveChange(aPhone.box, "edit", orig.Seq)
	if edit.Type != "edit" || string(edit.Body) != `"hello all"` || edit.From != bob.ID || edit.Reactions != nil || edit.ReplyToPreview != nil {
		t.Fatalf("live edit = %+v", edit)
	}

	// Alice (MQTT 5) may not edit bob's message: PUBACK 0x87 and an error event.
	raw, _ := json.Marshal(map[string]any{"to": to, "cmid": "a-edit", "edit": map[string]any{"seq": orig.Seq}, "body": "mine now"})
	if rc, _ := aPhone.publish(t, "users/"+alice.ID+"/send", raw); rc != 0x87 {
		t.Fatalf("alice editing bob's message: reason 0x%02x, want 0x87", rc)
	}
	if ev := aPhone.box.next(t, "the refusal", onEvent(alice.ID, "error")).event(t); ev.Code != "not_authorized" || ev.CMID != "a-edit" {
		t.Fatalf("error event = %+v", ev)
	}
	// A 3.1.1 client learns of a refusal from its error event.
	publish(bPhone, bob.ID, map[string]any{"to": to, "cmid": "b-bad", "edit": map[string]any{"seq": 99}, "body": "x"})
	if ev := bPhone.box.next(t, "bob's refusal", onEvent(bob.ID, "error")).event(t); ev.Code != "not_found" || ev.CMID != "b-bad" {
		t.Fatalf("error event = %+v", ev)
	}

	// REST: carol replies, reactions come and go, idempotently.
	var sent changeAnswer
	if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/messages", carol.Token, map[string]any{"body": "who wrote this?", "reply_to": orig.Seq}, map[string]string{"Idempotency-Key": "c1"}, &sent); st != http.StatusCreated {
		t.Fatalf("carol's reply: %d", st)
	}
	reply := sent.Seq
	for _, r := range []struct {
		who    account
		method string
		emoji  string
		dup    bool
	}{
		{bob, "PUT", "👍", false}, {carol, "PUT", "👍", false}, {dave, "PUT", "🎉", false},
		{bob, "PUT", "👍", true}, {dave, "DELETE", "🎉", false}, {dave, "DELETE", "🎉", true},
	} {
		st, ans, bad := s.change(t, r.who, r.method, reactionPath(g.Chat, orig.Seq, r.emoji), "k"+fmt.Sprint(time.Now().UnixNano()), nil)
		if st != http.StatusOK || ans.Duplicate != r.dup {
			t.Fatalf("%s %s %s: %d %+v %+v, want duplicate %v", r.who.Username, r.method, r.emoji, st, ans, bad, r.dup)
		}
	}
	m := s.message(t, bob, g.Chat, orig.Seq)
	if string(m.Body) != `"hello all"` || m.EditedAt == "" || len(m.Reactions) != 1 || m.Reactions[0].Emoji != "👍" ||
		m.Reactions[0].Count != 2 || m.Reactions[0].Mine == nil || !*m.Reactions[0].Mine {
		t.Fatalf("bob's message in history = %+v", m)
	}
	if m := s.message(t, dave, g.Chat, orig.Seq); *m.Reactions[0].Mine {
		t.Fatalf("dave's view marks bob's reaction as his: %+v", m.Reactions)
	}
	if p := s.message(t, dave, g.Chat, reply).ReplyToPreview; p == nil || p.Seq != orig.Seq || p.From != bob.ID || p.Excerpt == nil || *p.Excerpt != "hello all" {
		t.Fatalf("reply preview = %+v", p)
	}

	// REST refusals, with their codes.
	for _, tc := range []struct {
		name        string
		who         account
		method      string
		path, key   string
		body        any
		status      int
		code, words string
	}{
		{"edit of another's message", carol, "PATCH", fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, orig.Seq), "", map[string]any{"body": "x", "cmid": "c-e"}, 403, "not_authorized", "sender"},
		{"delete by a plain member", dave, "DELETE", fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, orig.Seq), "d-d", nil, 403, "not_authorized", "admin"},
		{"delete without a key", bob, "DELETE", fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, orig.Seq), "", nil, 400, "invalid_payload", "Idempotency-Key"},
		{"edit of a seq not there", bob, "PATCH", fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, 999), "b-e9", map[string]any{"body": "x"}, 404, "not_found", "999"},
		{"a bad seq", bob, "PATCH", fmt.Sprintf("/v1/chats/%s/messages/x", g.Chat), "b-ex", map[string]any{"body": "x"}, 400, "invalid_payload", "seq"},
		{"a bad emoji", bob, "PUT", reactionPath(g.Chat, orig.Seq, "a b"), "b-r", nil, 400, "invalid_payload", "emoji"},
		{"a chat that is not yours", dave, "PUT", reactionPath(directChat(alice.ID, bob.ID), 1, "x"), "d-r", nil, 403, "not_authorized", "member"},
	} {
		st, _, bad := s.change(t, tc.who, tc.method, tc.path, tc.key, tc.body)
		if st != tc.status || bad.Error.Code != tc.code || !strings.Contains(bad.Error.Message, tc.words) {
			t.Errorf("%s: %d %+v, want %d %s mentioning %q", tc.name, st, bad.Error, tc.status, tc.code, tc.words)
		}
	}

	// Alice edits her own message within the window over REST, then not
	// after it.
	if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/messages", alice.Token, map[string]any{"body": "meet at 5"}, map[string]string{"Idempotency-Key": "a1"}, &sent); st != http.StatusCreated {
		t.Fatalf("alice's message: %d", st)
	}
	mine := sent.Seq
	path := fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, mine)
	st, edited, bad := s.change(t, alice, "PATCH", path, "", map[string]any{"body": "meet at 6", "cmid": "a1-e"})
	if st != http.StatusOK || edited.Duplicate || edited.Seq <= mine {
		t.Fatalf("alice's edit: %d %+v %+v", st, edited, bad)
	}
	if st, again, _ := s.change(t, alice, "PATCH", path, "a1-e", map[string]any{"body": "meet at 6"}); st != http.StatusOK || !again.Duplicate || again.Seq != edited.Seq {
		t.Fatalf("alice's edit retried: %d %+v", st, again)
	}
	sentAt, err := time.Parse(time.RFC3339Nano, s.message(t, alice, g.Chat, mine).SentAt)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edit window to pass", func() error {
		if d := time.Since(sentAt); d <= window {
			return fmt.Errorf("only %s since the message", d)
		}
		return nil
	})
	if st, _, bad := s.change(t, alice, "PATCH", path, "a1-late", map[string]any{"body": "meet at 7"}); st != http.StatusConflict || bad.Error.Code != "conflict" || !strings.Contains(bad.Error.Message, "edit window passed") {
		t.Fatalf("late edit: %d %+v", st, bad.Error)
	}

	// Alice, the group's owner, deletes bob's message for everyone; a
	// second delete changes nothing.
	st, del, bad := s.change(t, alice, "DELETE", fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, orig.Seq), "a-del", nil)
	if st != http.StatusOK || del.Duplicate {
		t.Fatalf("delete: %d %+v %+v", st, del, bad)
	}
	if live := liveChange(bPhone.box, "delete", orig.Seq); live.Type != "delete" || string(live.Body) != "null" || live.From != alice.ID {
		t.Fatalf("live delete on bob's phone = %+v", live)
	}
	if st, again, _ := s.change(t, bob, "DELETE", fmt.Sprintf("/v1/chats/%s/messages/%d", g.Chat, orig.Seq), "b-del", nil); st != http.StatusOK || !again.Duplicate || again.Seq != orig.Seq {
		t.Fatalf("second delete: %d %+v", st, again)
	}
	tomb := s.message(t, carol, g.Chat, orig.Seq)
	if !tomb.Deleted || string(tomb.Body) != "null" || tomb.Reactions != nil || tomb.EditedAt != "" || tomb.From != bob.ID {
		t.Fatalf("tombstone = %+v", tomb)
	}
	if p := s.message(t, carol, g.Chat, reply).ReplyToPreview; p == nil || p.Excerpt != nil {
		t.Fatalf("preview of a deleted message = %+v", p)
	}
	// Its edit keeps its place in the chat, but not its text.
	if e := s.message(t, carol, g.Chat, edit.Seq); e.Change == nil || strings.Contains(string(e.Body), "hello") {
		t.Fatalf("the deleted message's edit still shows its text: %+v", e)
	}

	// Dave's laptop was offline through all of it: one sync request brings
	// every change message and the resolved state.
	dLaptop := dialV5(t, tcpConn(t, s.addrs.MQTT), dave, "laptop")
	dLaptop.subscribe(t, "users/"+dave.ID+"/#")
	req, _ := json.Marshal(map[string]any{"request_id": "r1", "chat": g.Chat, "after": 0, "limit": 200})
	if rc, err := dLaptop.publish(t, "users/"+dave.ID+"/sync", req); rc != 0 || err != nil {
		t.Fatalf("sync: 0x%02x %v", rc, err)
	}
	var hist struct {
		Type     string         `json:"type"`
		Messages []lifecycleMsg `json:"messages"`
	}
	if err := json.Unmarshal(dLaptop.box.next(t, "the history answer", onEvent(dave.ID, "history")).Payload, &hist); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, m := range hist.Messages {
		if m.Change != nil {
			kinds[m.Change.Kind]++
		}
		if m.Seq == orig.Seq && (!m.Deleted || string(m.Body) != "null") {
			t.Errorf("synced bob's message = %+v", m)
		}
		if m.Seq == mine && (string(m.Body) != `"meet at 6"` || m.EditedAt == "") {
			t.Errorf("synced alice's message = %+v", m)
		}
	}
	if kinds["edit"] != 2 || kinds["delete"] != 1 || kinds["react"] != 3 || kinds["unreact"] != 1 {
		t.Errorf("synced change messages by kind = %v", kinds)
	}
}

// TestClusterEditThroughNonOwner edits and reacts through nodes that do
// not own the chat; devices on the other nodes receive the changes and
// history shows them resolved.
func TestClusterEditThroughNonOwner(t *testing.T) {
	const n1, n2, n3 = 0, 1, 2
	c := startCluster(t, 3)
	alice := c.server(n1).register(t, "alice")
	bob := c.peerOwnedBy(t, n2, n3, "bob", alice) // their chat is n3's
	ab := chat.DirectChatID(alice.ID, bob.ID)

	aPhone := dialV5(t, tcpConn(t, c.nodes[n1].mqttAddr), alice, "phone")
	aPhone.subscribe(t, "users/"+alice.ID+"/#")
	aLaptop := dialV5(t, tcpConn(t, c.nodes[n3].mqttAddr), alice, "laptop")
	aLaptop.subscribe(t, "users/"+alice.ID+"/#")
	bPhone := dialV3(t, "tcp://"+c.nodes[n2].mqttAddr, bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/#")

	aPhone.send(t, bob.ID, "m1", "see you tomorow")
	orig := bPhone.box.next(t, "the message on n2", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	raw, _ := json.Marshal(map[string]any{"to": "user:" + bob.ID, "cmid": "m1-e", "edit": map[string]any{"seq": orig.Seq}, "body": "see you tomorrow"})
	if rc, err := aPhone.publish(t, "users/"+alice.ID+"/send", raw); rc != 0 || err != nil {
		t.Fatalf("edit through n1: 0x%02x %v", rc, err)
	}
	isEdit := func(r received) bool {
		var m lifecycleMsg
		return strings.HasSuffix(r.Topic, "/inbox") && json.Unmarshal(r.Payload, &m) == nil &&
			m.Change != nil && m.Change.Kind == "edit" && m.Change.Seq == orig.Seq && string(m.Body) == `"see you tomorrow"`
	}
	bPhone.box.next(t, "the edit on bob's phone (n2)", isEdit)
	aLaptop.box.next(t, "the edit on alice's laptop (n3)", isEdit)

	// Bob reacts over REST on n2; alice's phone on n1 hears it.
	st, ans, bad := c.server(n2).change(t, bob, "PUT", reactionPath(ab, orig.Seq, "👍"), "b-r", nil)
	if st != http.StatusOK || ans.Duplicate {
		t.Fatalf("react through n2: %d %+v %+v", st, ans, bad)
	}
	aPhone.box.next(t, "the reaction on alice's phone (n1)", func(r received) bool {
		var m lifecycleMsg
		return strings.HasSuffix(r.Topic, "/inbox") && json.Unmarshal(r.Payload, &m) == nil &&
			m.Change != nil && m.Change.Kind == "react" && m.Change.Emoji == "👍"
	})
	// Every node reads the same resolved message.
	for _, n := range []int{n1, n2, n3} {
		m := c.server(n).message(t, alice, ab, orig.Seq)
		if string(m.Body) != `"see you tomorrow"` || m.EditedAt == "" || len(m.Reactions) != 1 || m.Reactions[0].Count != 1 || *m.Reactions[0].Mine {
			t.Errorf("history on %s = %+v", c.ids[n], m)
		}
	}
}
