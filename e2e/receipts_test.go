package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// receiptEvent is a "receipt" (1:1 chat) or "receipts" (group) event.
type receiptEvent struct {
	Type         string         `json:"type"`
	Chat         string         `json:"chat"`
	User         string         `json:"user"`
	DeliveredSeq uint64         `json:"delivered_seq"`
	ReadSeq      uint64         `json:"read_seq"`
	Receipts     []receiptEntry `json:"receipts"`
}

type receiptEntry struct {
	User         string `json:"user"`
	DeliveredSeq uint64 `json:"delivered_seq"`
	ReadSeq      uint64 `json:"read_seq"`
}

func (r received) receipt(t *testing.T) receiptEvent {
	t.Helper()
	var e receiptEvent
	if err := json.Unmarshal(r.Payload, &e); err != nil {
		t.Fatalf("event payload %q: %v", r.Payload, err)
	}
	return e
}

// directReceipt matches a 1:1 receipt about user in chat for which ok holds.
func directReceipt(t *testing.T, chat, user string, ok func(receiptEvent) bool) func(received) bool {
	return func(r received) bool {
		e := r.receipt(t)
		return e.Type == "receipt" && e.Chat == chat && e.User == user && ok(e)
	}
}

// groupEntry finds user's entry in a "receipts" event of chat.
func groupEntry(t *testing.T, r received, chat, user string) (receiptEntry, bool) {
	e := r.receipt(t)
	if e.Type != "receipts" || e.Chat != chat {
		return receiptEntry{}, false
	}
	seen := map[string]bool{}
	for _, x := range e.Receipts {
		if seen[x.User] {
			t.Fatalf("user %s listed twice in one receipts event: %s", x.User, r.Payload)
		}
		seen[x.User] = true
	}
	for _, x := range e.Receipts {
		if x.User == user {
			return x, true
		}
	}
	return receiptEntry{}, false
}

func (s *server) summary(t *testing.T, a account, chat string) chatSummary {
	t.Helper()
	for _, ch := range s.allChats(t, a, url.Values{}).Chats {
		if ch.Chat == chat {
			return ch
		}
	}
	t.Fatalf("%s has no chat %s", a.Username, chat)
	return chatSummary{}
}

func (s *server) markRead(t *testing.T, a account, chat string, seq uint64) (read, delivered uint64) {
	t.Helper()
	var out struct {
		ReadSeq      uint64 `json:"read_seq"`
		DeliveredSeq uint64 `json:"delivered_seq"`
	}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/read", a.Token, map[string]uint64{"seq": seq}, nil, &out); st != http.StatusOK {
		t.Fatalf("mark read %s %d: status %d", chat, seq, st)
	}
	return out.ReadSeq, out.DeliveredSeq
}

// TestDirectReceipts: bob's device PUBACKing an inbox message gives alice a
// delivered receipt and moves bob's delivered cursor; bob reading over REST
// gives alice (and bob's other devices) a read receipt.
func TestDirectReceipts(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.subscribe(t, "users/"+alice.ID+"/events")
	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	bLaptop := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "laptop")
	bLaptop.subscribe(t, "users/"+bob.ID+"/events")

	a.send(t, bob.ID, "r1", "hello")
	m := bPhone.box.next(t, "bob's inbox", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	if m.CMID != "r1" || m.Seq != 1 {
		t.Fatalf("bob got %+v", m)
	}

	ev := a.box.next(t, "delivered receipt", directReceipt(t, chat, bob.ID, func(e receiptEvent) bool { return e.DeliveredSeq > 0 })).receipt(t)
	if ev.DeliveredSeq != 1 || ev.ReadSeq != 0 {
		t.Fatalf("delivered receipt %+v", ev)
	}
	// The cursor is stored before the receipt leaves.
	if sum := s.summary(t, bob, chat); sum.DeliveredSeq != 1 || sum.ReadSeq != 0 || sum.Unread != 1 {
		t.Fatalf("bob's chat after delivery: %+v", sum)
	}

	if read, _ := s.markRead(t, bob, chat, 1); read != 1 {
		t.Fatalf("read_seq %d", read)
	}
	for who, box := range map[string]mailbox{"alice": a.box, "bob's laptop": bLaptop.box} {
		ev := box.next(t, who+": read receipt", directReceipt(t, chat, bob.ID, func(e receiptEvent) bool { return e.ReadSeq > 0 })).receipt(t)
		if ev.ReadSeq != 1 {
			t.Fatalf("%s: read receipt %+v", who, ev)
		}
	}
	if sum := s.summary(t, bob, chat); sum.DeliveredSeq != 1 || sum.ReadSeq != 1 || sum.Unread != 0 {
		t.Fatalf("bob's chat after reading: %+v", sum)
	}
}

// TestGroupReceiptsCoalesced: a group message delivered to both other
// members reaches the sender as "receipts" events listing both; a read is
// listed the same way.
func TestGroupReceiptsCoalesced(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "team", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.subscribe(t, "users/"+alice.ID+"/events")
	b := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	b.subscribe(t, "users/"+bob.ID+"/inbox")
	c := dialV3(t, "tcp://"+s.addrs.MQTT, carol, "phone") // a 3.1.1 PUBACK counts the same
	if rc := c.subscribe(t, "users/"+carol.ID+"/inbox"); rc != 1 {
		t.Fatalf("carol subscribe: 0x%02x", rc)
	}

	if rc, err := a.publish(t, "users/"+alice.ID+"/send", groupEnvelope(g.GroupID, "g1", "hi all")); rc != 0 || err != nil {
		t.Fatalf("group send: 0x%02x %v", rc, err)
	}
	isG1 := func(r received) bool { return r.inbox(t).CMID == "g1" }
	seq := b.box.next(t, "bob's copy", isG1).inbox(t).Seq
	if m := c.box.next(t, "carol's copy", isG1).inbox(t); m.Seq != seq {
		t.Fatalf("carol got seq %d, bob %d", m.Seq, seq)
	}

	// Both members appear, maybe over more than one event.
	pending := map[string]bool{bob.ID: true, carol.ID: true}
	for len(pending) > 0 {
		r := a.box.next(t, fmt.Sprintf("receipts for %d more members", len(pending)), func(r received) bool {
			e := r.receipt(t)
			return e.Type == "receipts" && e.Chat == g.Chat
		})
		for u := range pending {
			if x, ok := groupEntry(t, r, g.Chat, u); ok && x.DeliveredSeq >= seq {
				delete(pending, u)
			}
		}
	}
	for _, u := range []account{bob, carol} {
		if sum := s.summary(t, u, g.Chat); sum.DeliveredSeq != seq {
			t.Fatalf("%s's group after delivery: %+v", u.Username, sum)
		}
	}

	if read, _ := s.markRead(t, carol, g.Chat, seq); read != seq {
		t.Fatalf("read_seq %d", read)
	}
	r := a.box.next(t, "carol's read", func(r received) bool {
		x, ok := groupEntry(t, r, g.Chat, carol.ID)
		return ok && x.ReadSeq == seq
	})
	if x, _ := groupEntry(t, r, g.Chat, carol.ID); x.DeliveredSeq != seq {
		t.Fatalf("carol's entry %+v: latest delivered cursor missing", x)
	}
}

// TestUnreadExactAcrossDevices: reads on one device keep the chat list's
// unread counts exact (last_seq - read_seq), reach the user's other
// devices, never go backwards, and deliveries do not change them.
func TestUnreadExactAcrossDevices(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	bPhone := dialV3(t, "tcp://"+s.addrs.MQTT, bob, "phone")
	if rc := bPhone.subscribe(t, "users/"+bob.ID+"/#"); rc != 1 {
		t.Fatalf("subscribe: 0x%02x", rc)
	}
	for i := 1; i <= 5; i++ {
		a.send(t, bob.ID, fmt.Sprintf("u%d", i), "msg")
	}
	// Every message reaches the phone, which PUBACKs them all.
	deadline := time.Now().Add(waitTimeout)
	for {
		sum := s.summary(t, bob, chat)
		if sum.LastSeq != 5 || sum.Unread != 5 || sum.ReadSeq != 0 {
			t.Fatalf("before reading: %+v", sum)
		}
		if sum.DeliveredSeq == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered cursor stuck: %+v", sum)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The laptop (REST) reads up to 3.
	if read, delivered := s.markRead(t, bob, chat, 3); read != 3 || delivered != 5 {
		t.Fatalf("mark read: read %d delivered %d", read, delivered)
	}
	if sum := s.summary(t, bob, chat); sum.Unread != 2 || sum.Unread != sum.LastSeq-sum.ReadSeq {
		t.Fatalf("after reading 3: %+v", sum)
	}
	ev := bPhone.box.next(t, "read state on the phone", directReceipt(t, chat, bob.ID, func(e receiptEvent) bool { return e.ReadSeq > 0 })).receipt(t)
	if ev.ReadSeq != 3 {
		t.Fatalf("phone got %+v", ev)
	}

	// Another device lagging behind cannot move it back.
	if read, _ := s.markRead(t, bob, chat, 2); read != 3 {
		t.Fatalf("read went back to %d", read)
	}
	if read, _ := s.markRead(t, bob, chat, 5); read != 5 {
		t.Fatalf("read_seq %d", read)
	}
	ev = bPhone.box.next(t, "second read on the phone", directReceipt(t, chat, bob.ID, func(e receiptEvent) bool { return e.ReadSeq > 0 })).receipt(t)
	if ev.ReadSeq != 5 {
		t.Fatalf("phone got %+v (a read that did not move was announced?)", ev)
	}
	if sum := s.summary(t, bob, chat); sum.Unread != 0 || sum.ReadSeq != 5 || sum.DeliveredSeq != 5 {
		t.Fatalf("after reading all: %+v", sum)
	}
	if sum := s.summary(t, alice, chat); sum.Unread != 0 {
		t.Fatalf("alice's own messages unread: %+v", sum)
	}
}
