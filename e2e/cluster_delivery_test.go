package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqchat/mqchat/services/chat"
)

// recorder keeps everything a device received, so a test can wait for one
// thing without throwing away the others it checks later.
type recorder struct {
	name string
	box  mailbox
	seen []received
	pos  int // where next resumes
}

func newRecorder(name string, box mailbox) *recorder { return &recorder{name: name, box: box} }

// await returns the first message, received so far or later, matching pred.
func (r *recorder) await(t *testing.T, what string, pred func(received) bool) received {
	t.Helper()
	for _, m := range r.seen {
		if pred(m) {
			return m
		}
	}
	deadline := time.After(waitTimeout)
	for {
		select {
		case m := <-r.box:
			r.seen = append(r.seen, m)
			if pred(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("%s: timed out waiting for %s", r.name, what)
		}
	}
}

// drain takes in whatever has arrived by now.
func (r *recorder) drain() {
	for {
		select {
		case m := <-r.box:
			r.seen = append(r.seen, m)
		default:
			return
		}
	}
}

// inbox is what the device got on its inbox for chatID, in arrival order.
func (r *recorder) inbox(t *testing.T, chatID string) []inboxMsg {
	t.Helper()
	var out []inboxMsg
	for _, m := range r.seen {
		if strings.HasSuffix(m.Topic, "/inbox") {
			if msg := m.inbox(t); msg.Chat == chatID {
				out = append(out, msg)
			}
		}
	}
	return out
}

// awaitCMIDs waits until the device got every cmid listed on its inbox
// for chatID.
func (r *recorder) awaitCMIDs(t *testing.T, chatID string, cmids ...string) {
	t.Helper()
	for _, cmid := range cmids {
		r.await(t, fmt.Sprintf("%s in %s", cmid, chatID), func(m received) bool {
			if !strings.HasSuffix(m.Topic, "/inbox") {
				return false
			}
			msg := m.inbox(t)
			return msg.Chat == chatID && msg.CMID == cmid
		})
	}
}

// wantExactlyOnce checks the device's inbox for chatID: every cmid listed
// exactly once, and seqs strictly ascending without a gap from the first
// the device got (a device that joined a group late starts at its join).
func (r *recorder) wantExactlyOnce(t *testing.T, chatID string, cmids ...string) {
	t.Helper()
	msgs := r.inbox(t, chatID)
	count := map[string]int{}
	for i, m := range msgs {
		count[m.CMID]++
		if i > 0 && m.Seq != msgs[i-1].Seq+1 {
			t.Errorf("%s: %s seqs in arrival order %v: not ascending without gaps", r.name, chatID, seqsOf(msgs))
			break
		}
	}
	for _, cmid := range cmids {
		if count[cmid] != 1 {
			t.Errorf("%s: %s got %s %d times, want once", r.name, chatID, cmid, count[cmid])
		}
	}
}

func seqsOf(msgs []inboxMsg) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// TestClusterCrossNodeDelivery: alice has a device on n1 and one on n2, bob
// one on n2, carol one on n3; their 1:1 chat is owned by n3, where neither
// of them is connected. Messages both ways, retries, receipts, a group of
// the three with a membership change and a REST send through a third node
// reach every device of every member exactly once, in seq order.
func TestClusterCrossNodeDelivery(t *testing.T) {
	const n1, n2, n3 = 0, 1, 2
	c := startCluster(t, 3)
	alice := c.server(n1).register(t, "alice")
	bob := c.peerOwnedBy(t, n2, n3, "bob", alice)
	carol := c.server(n3).register(t, "carol")
	ab := chat.DirectChatID(alice.ID, bob.ID)

	dial := func(node int, a account, device string) *v5 {
		d := dialV5(t, tcpConn(t, c.nodes[node].mqttAddr), a, device)
		d.subscribe(t, "users/"+a.ID+"/#")
		return d
	}
	aPhone := dial(n1, alice, "phone")
	aPhoneRec := newRecorder("alice/phone on n1", aPhone.box)
	aLaptop := newRecorder("alice/laptop on n2", dial(n2, alice, "laptop").box)
	bPhone := dialV3(t, "tcp://"+c.nodes[n2].mqttAddr, bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/#")
	bPhoneRec := newRecorder("bob/phone on n2", bPhone.box)
	cPhone := dial(n3, carol, "phone")
	cPhoneRec := newRecorder("carol/phone on n3", cPhone.box)

	// 1:1 both ways; every send's PUBACK is checked by send.
	var abCMIDs []string
	for i := range 5 {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		aPhone.send(t, bob.ID, a, "from alice")
		bPhone.send(t, alice.ID, b, "from bob")
		abCMIDs = append(abCMIDs, a, b)
	}
	// Alice has the last word: bob's cursors then move only through his
	// phone's PUBACK and his read, not as a side effect of his own send.
	aPhone.send(t, bob.ID, "a5", "from alice")
	abCMIDs = append(abCMIDs, "a5")
	for _, d := range []*recorder{aPhoneRec, aLaptop, bPhoneRec} {
		d.awaitCMIDs(t, ab, abCMIDs...)
		if msgs := d.inbox(t, ab); msgs[0].Seq != 1 {
			t.Errorf("%s: first message of %s has seq %d, want 1", d.name, ab, msgs[0].Seq)
		}
	}

	// Bob's phone acknowledged seq 11: alice's phone on n1 hears of it,
	// then of bob reading it on n2.
	delivered := func(seq uint64) func(received) bool {
		return func(r received) bool {
			return r.Topic == "users/"+alice.ID+"/events" &&
				directReceipt(t, ab, bob.ID, func(e receiptEvent) bool { return e.DeliveredSeq == seq })(r)
		}
	}
	aPhoneRec.await(t, "bob's delivered receipt for seq 11", delivered(11))
	if read, _ := c.server(n2).markRead(t, bob, ab, 11); read != 11 {
		t.Fatalf("bob's read cursor: %d, want 11", read)
	}
	aPhoneRec.await(t, "bob's read receipt", func(r received) bool {
		return r.Topic == "users/"+alice.ID+"/events" &&
			directReceipt(t, ab, bob.ID, func(e receiptEvent) bool { return e.ReadSeq == 11 })(r)
	})

	// A retry from n1 is acknowledged, not stored again, and confirmed on
	// alice's events: her laptop on n2 hears it too.
	aPhone.send(t, bob.ID, "a0", "from alice")
	for _, d := range []*recorder{aPhoneRec, aLaptop} {
		ev := d.await(t, "the retry's sent event", onEvent(alice.ID, "sent")).event(t)
		if ev.CMID != "a0" || !ev.Duplicate || ev.Seq != 1 || ev.Chat != ab {
			t.Errorf("%s: sent event %+v, want a duplicate of a0 at seq 1 of %s", d.name, ev, ab)
		}
	}

	// A group owned by n3: alice makes it alone (no one else hears of the
	// tries), then adds bob and carol through n1.
	var g groupView
	for k := 0; ; k++ {
		if k == 50 {
			t.Fatal("no group among 50 is owned by n3")
		}
		if st := c.server(n1).call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": fmt.Sprintf("trip-%d", k), "members": []string{}}, nil, &g); st != http.StatusCreated {
			t.Fatalf("create group: status %d", st)
		}
		if c.owner(chat.GroupChatID(g.GroupID)) == n3 {
			break
		}
	}
	gc := chat.GroupChatID(g.GroupID)
	if st := c.server(n1).call(t, "POST", "/v1/groups/"+g.GroupID+"/members", alice.Token, map[string]any{"user_ids": []string{bob.ID, carol.ID}}, nil, nil); st != http.StatusOK {
		t.Fatalf("add members: status %d", st)
	}
	for _, d := range []struct {
		rec *recorder
		uid string
	}{{aPhoneRec, alice.ID}, {aLaptop, alice.ID}, {bPhoneRec, bob.ID}, {cPhoneRec, carol.ID}} {
		var ev groupEvent
		raw := d.rec.await(t, "members_added", func(r received) bool {
			return onEvent(d.uid, "group")(r) && json.Unmarshal(r.Payload, &ev) == nil && ev.GroupID == g.GroupID && ev.Op == "members_added"
		})
		if err := json.Unmarshal(raw.Payload, &ev); err != nil || len(ev.Users) != 2 {
			t.Errorf("%s: members_added event %s", d.rec.name, raw.Payload)
		}
	}
	for _, s := range []struct {
		c    *v5
		cmid string
	}{{aPhone, "ga"}, {cPhone, "gc"}} {
		if rc, err := s.c.publish(t, "users/"+s.c.acct.ID+"/send", groupEnvelope(g.GroupID, s.cmid, "hello")); rc != 0 || err != nil {
			t.Fatalf("group send %s: reason 0x%02x, %v", s.cmid, rc, err)
		}
	}
	bPhone.publish(t, "users/"+bob.ID+"/send", groupEnvelope(g.GroupID, "gb", "from bob"))
	for _, d := range []*recorder{aPhoneRec, aLaptop, bPhoneRec, cPhoneRec} {
		d.awaitCMIDs(t, gc, "ga", "gb", "gc")
	}

	// REST through n3 into a chat owned by n1, delivered to bob on n2.
	dave := c.peerOwnedBy(t, n3, n1, "dave", bob)
	db := chat.DirectChatID(dave.ID, bob.ID)
	var sent struct {
		Chat string `json:"chat"`
		Seq  uint64 `json:"seq"`
	}
	if st := c.server(n3).call(t, "POST", "/v1/chats/"+db+"/messages", dave.Token, map[string]any{"body": "over REST"},
		map[string]string{"Idempotency-Key": "rest-1"}, &sent); st != http.StatusCreated || sent.Seq != 1 || sent.Chat != db {
		t.Fatalf("REST send through n3: status %d, %+v", st, sent)
	}
	bPhoneRec.awaitCMIDs(t, db, "rest-1")

	// Every device got every message of its chats once, in seq order; the
	// late ones had time to arrive while the rest was checked.
	for _, d := range []*recorder{aPhoneRec, aLaptop, bPhoneRec, cPhoneRec} {
		d.drain()
	}
	for _, d := range []*recorder{aPhoneRec, aLaptop, bPhoneRec} {
		d.wantExactlyOnce(t, ab, abCMIDs...)
	}
	for _, d := range []*recorder{aPhoneRec, aLaptop, bPhoneRec, cPhoneRec} {
		d.wantExactlyOnce(t, gc, "ga", "gb", "gc")
	}
	bPhoneRec.wantExactlyOnce(t, db, "rest-1")

	// The 1:1 and group sends made on n1 and n2 went to n3, which owns both.
	if owned, err := c.metric(n3, "mqchat_cluster_owned_sends_total"); err != nil || owned < 12 {
		t.Errorf("mqchat_cluster_owned_sends_total on n3 = %v (%v), want at least the 12 sends forwarded to it", owned, err)
	}
}

// next returns the first message after the last one next returned that
// matches pred, waiting for it if need be.
func (r *recorder) next(t *testing.T, what string, pred func(received) bool) received {
	t.Helper()
	for {
		for ; r.pos < len(r.seen); r.pos++ {
			if m := r.seen[r.pos]; pred(m) {
				r.pos++
				return m
			}
		}
		select {
		case m := <-r.box:
			r.seen = append(r.seen, m)
		case <-time.After(waitTimeout):
			t.Fatalf("%s: timed out waiting for %s", r.name, what)
		}
	}
}

// TestClusterPresence: carol, on n3, watches alice's presence while
// alice's devices come and go on n1 and n2. The aggregate counts the
// devices of every node, GET /v1/presence answers the same on every node,
// moving a device (same client id) to another node closes the old
// connection with 0x8E and never shows offline, and offline comes only
// after the grace period.
func TestClusterPresence(t *testing.T) {
	const (
		n1, n2, n3 = 0, 1, 2
		grace      = 3 * time.Second
	)
	c := startCluster(t, 3, "--presence.grace", grace.String(), "--presence.publish_interval", "0s")
	alice := c.server(n1).register(t, "alice")
	carol := c.server(n3).register(t, "carol")
	befriend(t, c.server(n3), carol, alice)
	watcher := dialV5(t, tcpConn(t, c.nodes[n3].mqttAddr), carol, "watcher")
	if rc := watcher.subscribe(t, "presence/"+alice.ID); rc[0] != 1 {
		t.Fatalf("carol's subscription to alice's presence: 0x%02x", rc[0])
	}
	rec := newRecorder("carol's watcher on n3", watcher.box)
	live := func(status string, devices int) func(received) bool {
		return func(r received) bool {
			var p presenceMsg
			return r.Topic == "presence/"+alice.ID && !r.Retain && json.Unmarshal(r.Payload, &p) == nil &&
				p.Status == status && p.Devices == devices
		}
	}
	everywhere := func(status string, devices int) {
		t.Helper()
		for i := range c.nodes {
			eventually(t, fmt.Sprintf("GET /v1/presence on %s says %s with %d devices", c.ids[i], status, devices), func() error {
				var p presenceMsg
				if st := c.server(i).call(t, "GET", "/v1/presence/"+alice.ID, carol.Token, nil, nil, &p); st != http.StatusOK {
					return fmt.Errorf("status %d", st)
				}
				if p.Status != status || p.Devices != devices {
					return fmt.Errorf("%+v", p)
				}
				return nil
			})
		}
	}
	noOffline := func(what string) {
		t.Helper()
		for _, m := range rec.seen {
			if live("offline", 0)(m) {
				t.Fatalf("carol saw alice offline %s: %s", what, m.Payload)
			}
		}
	}

	phone := dialWatched(t, c.server(n1), alice.ID, alice.Token, "phone")
	rec.next(t, "alice online with her phone", live("online", 1))
	everywhere("online", 1)
	laptop := dialV5(t, tcpConn(t, c.nodes[n2].mqttAddr), alice, "laptop")
	rec.next(t, "alice online with two devices on two nodes", live("online", 2))
	everywhere("online", 2)
	if err := laptop.c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("laptop disconnect: %v", err)
	}
	rec.next(t, "alice back to one device", live("online", 1))
	everywhere("online", 1)

	// The phone moves to n2 while its connection on n1 is alive: n1 closes
	// it as a takeover, and for longer than the grace period nobody sees
	// alice go offline.
	moved := dialWatched(t, c.server(n2), alice.ID, alice.Token, "phone")
	phone.closedWith(t, "the phone's old connection on n1", 0x8E)
	window := time.After(grace + time.Second)
	for watching := true; watching; {
		select {
		case m := <-rec.box:
			rec.seen = append(rec.seen, m)
		case <-window:
			watching = false
		}
	}
	noOffline("after her phone moved to n2")
	if !moved.open() {
		t.Fatal("the phone's new connection on n2 was closed")
	}
	everywhere("online", 1)

	left := time.Now()
	if err := moved.c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("phone disconnect: %v", err)
	}
	rec.next(t, "alice offline", live("offline", 0))
	if waited := time.Since(left); waited < grace {
		t.Errorf("alice shown offline %v after her last device left, before the %v grace period", waited, grace)
	}
	everywhere("offline", 0)
}
