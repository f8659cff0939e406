package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

type chatSummary struct {
	Chat         string    `json:"chat"`
	Kind         string    `json:"kind"`
	Title        string    `json:"title"`
	LastSeq      uint64    `json:"last_seq"`
	LastMessage  *inboxMsg `json:"last_message"`
	ReadSeq      uint64    `json:"read_seq"`
	DeliveredSeq uint64    `json:"delivered_seq"`
	Unread       uint64    `json:"unread"`
	Left         bool      `json:"left"`
}

type chatList struct {
	Chats      []chatSummary `json:"chats"`
	Next       string        `json:"next"`
	SyncCursor string        `json:"sync_cursor"`
}

// allChats pages GET /v1/chats with the given query.
func (s *server) allChats(t *testing.T, a account, query url.Values) chatList {
	t.Helper()
	var out chatList
	for {
		var page chatList
		if st := s.call(t, "GET", "/v1/chats?"+query.Encode(), a.Token, nil, nil, &page); st != http.StatusOK {
			t.Fatalf("chat list: %d", st)
		}
		out.Chats = append(out.Chats, page.Chats...)
		if out.SyncCursor == "" {
			out.SyncCursor = page.SyncCursor
		}
		if page.Next == "" {
			return out
		}
		query.Set("after", page.Next)
	}
}

// historyAfter pages a chat forward from seq after.
func (s *server) historyAfter(t *testing.T, a account, chat string, after uint64) []inboxMsg {
	t.Helper()
	var out []inboxMsg
	for {
		page := s.history(t, a, chat, "?limit=7&after="+strconv.FormatUint(after, 10))
		out = append(out, page.Messages...)
		if page.Next == nil {
			return out
		}
		after = *page.Next
	}
}

// TestOfflineDeviceCatchesUpWithChatListAndHistory: a device offline during
// 100 messages in 3 chats ends, using only the chat list (changed_since)
// and history paging, with exactly the messages it missed, in seq order;
// unread counts are exact and reads on one device reach the others.
func TestOfflineDeviceCatchesUpWithChatListAndHistory(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "team", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	c := dialV3(t, "tcp://"+s.addrs.MQTT, carol, "phone")
	a.send(t, bob.ID, "warm-ab", "before")
	c.send(t, bob.ID, "warm-cb", "before")

	// Bob's laptop syncs, then goes away.
	before := s.allChats(t, bob, url.Values{"limit": {"2"}})
	known := map[string]uint64{}
	for _, ch := range before.Chats {
		known[ch.Chat] = ch.LastSeq
	}
	if len(known) != 3 {
		t.Fatalf("bob's chat list before: %+v", before.Chats)
	}

	// 100 messages in three chats while the laptop is offline.
	sent := map[string][]string{}
	ab, cb := directChat(alice.ID, bob.ID), directChat(carol.ID, bob.ID)
	for i := 0; i < 100; i++ {
		cmid := fmt.Sprintf("m%03d", i)
		switch i % 3 {
		case 0:
			a.send(t, bob.ID, cmid, "to bob")
			sent[ab] = append(sent[ab], cmid)
		case 1:
			c.send(t, bob.ID, cmid, "to bob")
			sent[cb] = append(sent[cb], cmid)
		default:
			if rc, err := a.publish(t, "users/"+alice.ID+"/send", groupEnvelope(g.GroupID, cmid, "to all")); rc != 0 || err != nil {
				t.Fatalf("group send: 0x%02x %v", rc, err)
			}
			sent[g.Chat] = append(sent[g.Chat], cmid)
		}
	}

	changed := s.allChats(t, bob, url.Values{"limit": {"2"}, "changed_since": {before.SyncCursor}})
	if len(changed.Chats) != 3 {
		t.Fatalf("changed chats: %+v", changed.Chats)
	}
	for _, ch := range changed.Chats {
		got := s.historyAfter(t, bob, ch.Chat, known[ch.Chat])
		want := sent[ch.Chat]
		if len(got) != len(want) {
			t.Fatalf("%s: caught up with %d messages, want %d", ch.Chat, len(got), len(want))
		}
		for i, m := range got {
			if m.CMID != want[i] || m.Seq != known[ch.Chat]+uint64(i)+1 {
				t.Fatalf("%s: message %d is %s seq %d, want %s seq %d", ch.Chat, i, m.CMID, m.Seq, want[i], known[ch.Chat]+uint64(i)+1)
			}
		}
		if ch.Unread != ch.LastSeq-ch.ReadSeq || ch.ReadSeq != 0 || ch.LastMessage == nil || ch.LastMessage.Seq != ch.LastSeq {
			t.Fatalf("summary %+v", ch)
		}
		if want := map[string]string{ab: "direct", cb: "direct", g.Chat: "group"}[ch.Chat]; ch.Kind != want {
			t.Fatalf("%s kind %s, want %s", ch.Chat, ch.Kind, want)
		}
	}
	if titles := map[string]string{ab: "alice", cb: "carol", g.Chat: "team"}; changed.Chats[0].Title != titles[changed.Chats[0].Chat] {
		t.Fatalf("title %q for %s", changed.Chats[0].Title, changed.Chats[0].Chat)
	}

	// Nothing changed since the newer cursor... except what the safety
	// margin repeats; every repeat is a chat already seen.
	again := s.allChats(t, bob, url.Values{"changed_since": {changed.SyncCursor}})
	for _, ch := range again.Chats {
		if _, ok := sent[ch.Chat]; !ok {
			t.Fatalf("unexpected chat %s", ch.Chat)
		}
	}

	// Reads: bob's phone reads the group; the laptop's list shows it, the
	// sender and bob's other devices get a receipt; cursors never go back.
	a.subscribe(t, "users/"+alice.ID+"/events")
	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/events")
	var gsum chatSummary
	for _, ch := range changed.Chats {
		if ch.Chat == g.Chat {
			gsum = ch
		}
	}
	var read struct {
		ReadSeq uint64 `json:"read_seq"`
	}
	if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/read", bob.Token, map[string]uint64{"seq": gsum.LastSeq - 5}, nil, &read); st != http.StatusOK || read.ReadSeq != gsum.LastSeq-5 {
		t.Fatalf("mark read: %d %+v", st, read)
	}
	for _, box := range []mailbox{a.box, bPhone.box} {
		// A group's receipts come coalesced: one "receipts" event listing
		// every member whose cursor moved (receipts_test.go).
		r := box.next(t, "receipts", func(r received) bool {
			x, ok := groupEntry(t, r, g.Chat, bob.ID)
			return ok && x.ReadSeq > 0
		})
		if x, _ := groupEntry(t, r, g.Chat, bob.ID); x.ReadSeq != gsum.LastSeq-5 {
			t.Fatalf("receipts %s", r.Payload)
		}
	}
	if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/read", bob.Token, map[string]uint64{"seq": 1}, nil, &read); st != http.StatusOK || read.ReadSeq != gsum.LastSeq-5 {
		t.Fatalf("read went backwards: %d %+v", st, read)
	}
	after := s.allChats(t, bob, url.Values{})
	for _, ch := range after.Chats {
		if ch.Chat == g.Chat && (ch.Unread != 5 || ch.ReadSeq != gsum.LastSeq-5) {
			t.Fatalf("group after read: %+v", ch)
		}
	}
	// The sender's own messages are never unread to it.
	// Her cursors move once fan-out is done, just after the PUBACK.
	eventually(t, "alice's own chat", func() error {
		for _, ch := range s.allChats(t, alice, url.Values{}).Chats {
			if ch.Unread != 0 && ch.Chat == ab {
				return fmt.Errorf("unread: %+v", ch)
			}
		}
		return nil
	})
	if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/read", bob.Token, map[string]uint64{"seq": 0}, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("read seq 0: %d", st)
	}
	if st := s.call(t, "GET", "/v1/chats?changed_since=yesterday", bob.Token, nil, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d", st)
	}
}
