package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/client"
)

var versions = []struct {
	name string
	v    int
}{{"mqtt5", 5}, {"mqtt3.1.1", 3}}

func TestSendReceive(t *testing.T) {
	srv := startChatd(t)
	srv.register(t, "alice")
	bobID := srv.register(t, "bob")
	ws := func(o *client.Options) { o.WSURL = "ws://" + srv.addrs.WS + "/mqtt" }
	for _, tc := range []struct {
		name   string
		v      int
		mutate func(*client.Options)
	}{
		{"mqtt5", 5, nil},
		{"mqtt3.1.1", 3, nil},
		{"mqtt5-websocket", 5, ws},
		{"mqtt3.1.1-websocket", 3, ws},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice := srv.dialWith(t, "alice", tc.v, nil, tc.mutate)
			bob := srv.dialWith(t, "bob", tc.v, nil, tc.mutate)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			body := "hello over " + tc.name
			sent, err := alice.Send(ctx, "user:"+bobID, body)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			if sent.Chat != directChat(alice.UserID(), bobID) || sent.Seq == 0 || sent.Duplicate {
				t.Fatalf("sent = %+v", sent)
			}
			got := nextMessages(t, bob, 1, "")[0]
			if got.Seq != sent.Seq || got.Chat != sent.Chat || got.Text() != body || got.From != alice.UserID() || got.CMID != sent.CMID {
				t.Fatalf("bob got %+v, want seq %d text %q", got, sent.Seq, body)
			}
			// The sender's own copy is part of the chat too.
			if own := nextMessages(t, alice, 1, "")[0]; own.Seq != sent.Seq {
				t.Fatalf("alice's copy has seq %d, want %d", own.Seq, sent.Seq)
			}
			// A refusal that no retry fixes comes back at once as the
			// server's code.
			if _, err := alice.Send(ctx, "user:nobody-at-all", "x"); !client.IsCode(err, "unknown_recipient") {
				t.Fatalf("send to nobody: %v, want unknown_recipient", err)
			}
		})
	}
}

// TestSendRetriesAcrossDisconnect cuts the sender's TCP connection while
// sends are in flight: every Send still returns its message, each stored
// once, and the recipient gets each seq once and in order.
func TestSendRetriesAcrossDisconnect(t *testing.T) {
	srv := startChatd(t)
	for i, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			aliceName, bobName := fmt.Sprintf("alice%d", i), fmt.Sprintf("bob%d", i)
			srv.register(t, aliceName)
			bobID := srv.register(t, bobName)
			cut := &cutter{}
			alice := srv.dial(t, aliceName, tc.v, cut)
			bob := srv.dial(t, bobName, tc.v, nil)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()

			const n = 40
			results := make([]client.Sent, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			started := make(chan struct{}, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					started <- struct{}{}
					results[i], errs[i] = alice.Send(ctx, "user:"+bobID, fmt.Sprintf("m%d", i))
				}()
			}
			// Cut three times while the sends are under way, each time
			// once the client has dialled again.
			for k := range 3 {
				<-started
				for cut.dialCount() < k+1 {
					nextEvent(t, alice, "reconnect", func(e client.Event) bool { return e.Type == "connected" })
				}
				cut.cut()
			}
			wg.Wait()
			seqs := map[uint64]int{}
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("send %d: %v", i, errs[i])
				}
				seqs[results[i].Seq]++
			}
			for seq := uint64(1); seq <= n; seq++ {
				if seqs[seq] != 1 {
					t.Fatalf("seq %d acknowledged to %d sends: %v", seq, seqs[seq], seqs)
				}
			}
			if cut.dialCount() < 2 {
				t.Fatalf("the client dialled %d times: the cuts did not happen", cut.dialCount())
			}
			stored := srv.history(t, bobName, results[0].Chat)
			if len(stored) != n {
				t.Fatalf("the chat holds %d messages, want %d (each cmid once)", len(stored), n)
			}
			got := nextMessages(t, bob, n, "")
			for i, m := range got {
				if m.Seq != uint64(i+1) {
					t.Fatalf("bob's message %d has seq %d: out of order or duplicated", i, m.Seq)
				}
			}
		})
	}
}

// TestSyncAfterReconnect keeps the recipient off the network while
// messages are sent, in a chat it knows and in one that begins while it
// is away: after it reconnects it gets all of them, once, in order.
func TestSyncAfterReconnect(t *testing.T) {
	srv := startChatd(t)
	for i, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			aliceName, bobName, carolName := fmt.Sprintf("alice%d", i), fmt.Sprintf("bob%d", i), fmt.Sprintf("carol%d", i)
			srv.register(t, aliceName)
			bobID := srv.register(t, bobName)
			srv.register(t, carolName)
			alice := srv.dial(t, aliceName, tc.v, nil)
			carol := srv.dial(t, carolName, tc.v, nil)
			cut := &cutter{}
			bob := srv.dial(t, bobName, tc.v, cut)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()

			if _, err := alice.Send(ctx, "user:"+bobID, "before"); err != nil {
				t.Fatal(err)
			}
			if m := nextMessages(t, bob, 1, "")[0]; m.Text() != "before" {
				t.Fatalf("bob got %+v", m)
			}
			cut.block(true)
			cut.cut()
			nextEvent(t, bob, "bob disconnected", func(e client.Event) bool { return e.Type == "disconnected" })
			for k := range 5 {
				if _, err := alice.Send(ctx, "user:"+bobID, fmt.Sprintf("away %d", k)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := carol.Send(ctx, "user:"+bobID, "carol while away"); err != nil {
				t.Fatal(err)
			}
			cut.block(false)

			got := nextMessages(t, bob, 6, "")
			var fromAlice []string
			var fromCarol []client.Message
			for _, m := range got {
				if m.From == carol.UserID() {
					fromCarol = append(fromCarol, m)
				} else {
					fromAlice = append(fromAlice, m.Text())
					if m.Seq != uint64(len(fromAlice)+1) {
						t.Fatalf("alice's chat: message %q has seq %d, want %d", m.Text(), m.Seq, len(fromAlice)+1)
					}
				}
			}
			if fmt.Sprint(fromAlice) != "[away 0 away 1 away 2 away 3 away 4]" {
				t.Fatalf("alice's messages after the reconnect: %q", fromAlice)
			}
			if len(fromCarol) != 1 || fromCarol[0].Seq != 1 || fromCarol[0].Text() != "carol while away" {
				t.Fatalf("carol's new chat: %+v", fromCarol)
			}
			// Nothing more comes (no duplicate): a message sent now is
			// the next one bob gets.
			if _, err := alice.Send(ctx, "user:"+bobID, "after"); err != nil {
				t.Fatal(err)
			}
			if m := nextMessages(t, bob, 1, "")[0]; m.Text() != "after" || m.Seq != 7 {
				t.Fatalf("bob's next message: %+v, want seq 7 \"after\"", m)
			}
			if seen := bob.Seen(); seen[directChat(alice.UserID(), bobID)] != 7 || seen[directChat(carol.UserID(), bobID)] != 1 {
				t.Fatalf("Seen() = %v", seen)
			}
		})
	}
}

// TestResumeFromSince starts a client with where its application's copy
// ended: what came after is delivered, nothing before.
func TestResumeFromSince(t *testing.T) {
	srv := startChatd(t)
	srv.register(t, "alice")
	bobID := srv.register(t, "bob")
	alice := srv.dial(t, "alice", 5, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for k := range 4 {
		if _, err := alice.Send(ctx, "user:"+bobID, fmt.Sprintf("m%d", k+1)); err != nil {
			t.Fatal(err)
		}
	}
	chat := directChat(alice.UserID(), bobID)
	bob, err := client.Dial(ctx, client.Options{
		MQTTAddr: srv.addrs.MQTT, HTTPBase: srv.base, Username: "bob", Password: "bob password", DeviceID: "dev",
		Since: map[string]uint64{chat: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	got := nextMessages(t, bob, 2, "")
	if got[0].Text() != "m3" || got[1].Text() != "m4" {
		t.Fatalf("resumed after seq 2, got %q and %q", got[0].Text(), got[1].Text())
	}
}

func TestGroupsReceiptsTypingPresence(t *testing.T) {
	srv := startChatd(t)
	srv.register(t, "alice")
	bobID := srv.register(t, "bob")
	strangerID := srv.register(t, "stranger")
	alice := srv.dial(t, "alice", 5, nil)
	bob := srv.dial(t, "bob", 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	g, err := alice.CreateGroup(ctx, "trip", bobID)
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	if g.ID == "" || len(g.Members) != 2 {
		t.Fatalf("group = %+v", g)
	}
	sent, err := alice.Send(ctx, "group:"+g.ID, "to the group")
	if err != nil {
		t.Fatal(err)
	}
	if m := nextMessages(t, bob, 1, "text")[0]; m.Chat != g.Chat || m.Seq != sent.Seq || m.Text() != "to the group" {
		t.Fatalf("bob got %+v, want %+v", m, sent)
	}

	if err := bob.MarkRead(ctx, g.Chat, sent.Seq); err != nil {
		t.Fatalf("mark read: %v", err)
	}
	nextEvent(t, alice, "bob's read receipt", func(e client.Event) bool {
		return e.Type == "receipts" && e.Chat == g.Chat && string(e.Raw) != "" && containsRead(e, bobID, sent.Seq)
	})

	if err := bob.Typing(ctx, g.Chat); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, alice, "bob typing", func(e client.Event) bool { return e.Type == "typing" && e.User == bobID && e.Chat == g.Chat })

	if err := alice.Presence(ctx, bobID); err != nil {
		t.Fatalf("watch presence: %v", err)
	}
	nextEvent(t, alice, "bob online", func(e client.Event) bool { return e.Type == "presence" && e.User == bobID && e.Status == "online" })

	if err := alice.RemoveMember(ctx, g.ID, bobID); err != nil {
		t.Fatalf("remove bob: %v", err)
	}
	if err := alice.AddMembers(ctx, g.ID, "no-such-user"); err == nil {
		t.Fatal("adding an unknown user succeeded")
	}
	// Bob (MQTT 3.1.1, so no refusing PUBACK) is out of the group: his
	// receipt is refused by an error event.
	if err := bob.MarkRead(ctx, g.Chat, sent.Seq); err != nil {
		t.Fatalf("3.1.1 receipt: %v", err)
	}
	nextEvent(t, bob, "refused receipt", func(e client.Event) bool { return e.Type == "error" && client.IsCode(e.Err, "not_authorized") })
	// Alice (MQTT 5) gets the refusal as the call's error.
	if err := alice.MarkRead(ctx, "g:no-such-group", 1); !client.IsCode(err, "not_authorized") {
		t.Fatalf("receipt for a chat alice is not in: %v, want not_authorized", err)
	}
	if err := alice.Presence(ctx, strangerID); !client.IsCode(err, "not_authorized") {
		t.Fatalf("watching a stranger's presence: %v, want not_authorized", err)
	}
}

func containsRead(e client.Event, uid string, seq uint64) bool {
	var r struct {
		Receipts []struct {
			User    string `json:"user"`
			ReadSeq uint64 `json:"read_seq"`
		} `json:"receipts"`
	}
	if json.Unmarshal(e.Raw, &r) != nil {
		return false
	}
	for _, x := range r.Receipts {
		if x.User == uid && x.ReadSeq >= seq {
			return true
		}
	}
	return false
}

// TestEditDeleteReact changes a message through the client: each change
// is a message of its own that the other side receives in order, and a
// device that syncs afterwards sees the resolved state.
func TestEditDeleteReact(t *testing.T) {
	srv := startChatd(t)
	srv.register(t, "alice")
	bobID := srv.register(t, "bob")
	for _, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			alice := srv.dial(t, "alice", tc.v, nil)
			bob := srv.dial(t, "bob", tc.v, nil)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			to := "user:" + bobID
			orig, err := alice.Send(ctx, to, "helo")
			if err != nil {
				t.Fatal(err)
			}
			edit, err := alice.Edit(ctx, to, orig.Seq, "hello")
			if err != nil {
				t.Fatalf("edit: %v", err)
			}
			if _, err := bob.React(ctx, "user:"+alice.UserID(), orig.Seq, "👍"); err != nil {
				t.Fatalf("react: %v", err)
			}
			// Bob may not edit Alice's message.
			if _, err := bob.Edit(ctx, "user:"+alice.UserID(), orig.Seq, "mine now"); !client.IsCode(err, "not_authorized") {
				t.Fatalf("bob's edit of alice's message: %v, want not_authorized", err)
			}
			got := nextMessages(t, bob, 3, "")
			if got[0].Seq != orig.Seq || got[1].Seq != edit.Seq || got[1].Type != "edit" || got[1].Change == nil ||
				got[1].Change.Kind != "edit" || got[1].Change.Seq != orig.Seq || got[1].Text() != "hello" {
				t.Fatalf("bob got %+v then %+v", got[0], got[1])
			}
			if r := got[2]; r.Type != "reaction" || r.Change == nil || r.Change.Kind != "react" || r.Change.Emoji != "👍" {
				t.Fatalf("bob's reaction came back as %+v", r)
			}
			del, err := alice.Delete(ctx, to, orig.Seq)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			// Deleting again is a success, not a second change.
			if again, err := alice.Delete(ctx, to, orig.Seq); err != nil || again.Seq == 0 {
				t.Fatalf("second delete: %+v, %v", again, err)
			}
			if d := nextMessages(t, bob, 1, "delete")[0]; d.Seq != del.Seq || d.Change.Seq != orig.Seq {
				t.Fatalf("bob's delete: %+v", d)
			}
			// A device resuming from before the message fetches it from
			// history in its final state.
			tablet := srv.dialWith(t, "bob", tc.v, nil, func(o *client.Options) {
				o.DeviceID = "tablet"
				o.Since = map[string]uint64{orig.Chat: orig.Seq - 1}
			})
			if m := nextMessages(t, tablet, 1, "")[0]; m.Seq != orig.Seq || !m.Deleted || string(m.Body) != "null" || len(m.Reactions) != 0 {
				t.Fatalf("the tablet got the deleted message as %+v", m)
			}
		})
	}
}

// TestLogsInAgain ends every session of the user (as a password change on
// another device does): the server closes the client's connection and
// refuses its token, and the client logs in again with its password.
func TestLogsInAgain(t *testing.T) {
	srv := startChatd(t)
	srv.register(t, "alice")
	bobID := srv.register(t, "bob")
	alice := srv.dial(t, "alice", 5, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	token := srv.login(t, "alice")
	req, _ := http.NewRequest("POST", srv.base+"/v1/auth/logout-all", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("logout-all: %s", res.Status)
	}
	nextEvent(t, alice, "disconnected", func(e client.Event) bool { return e.Type == "disconnected" })
	nextEvent(t, alice, "connected again", func(e client.Event) bool { return e.Type == "connected" })
	if _, err := alice.Send(ctx, "user:"+bobID, "still here"); err != nil {
		t.Fatalf("send after logging in again: %v", err)
	}
}

// TestHiddenSeqs: messages of a user bob blocks take seqs of the chat that
// bob never sees, live or in history. The gap they leave must not hold
// back what comes after them.
func TestHiddenSeqs(t *testing.T) {
	srv := startChatd(t)
	bobID := srv.register(t, "bob")
	carolID := srv.register(t, "carol")
	bob := srv.dial(t, "bob", 5, nil)
	carol := srv.dial(t, "carol", 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := bob.Send(ctx, "user:"+carolID, "hi carol"); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]string{"user_id": carolID})
	req, _ := http.NewRequest("POST", srv.base+"/v1/blocks", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+srv.login(t, "bob"))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("block: %s", res.Status)
	}
	if _, err := carol.Send(ctx, "user:"+bobID, "you will not see this"); err != nil {
		t.Fatal(err)
	}
	after, err := bob.Send(ctx, "user:"+carolID, "still talking")
	if err != nil {
		t.Fatal(err)
	}
	got := nextMessages(t, bob, 2, "")
	if got[0].Text() != "hi carol" || got[1].Text() != "still talking" || got[1].Seq != after.Seq || after.Seq != 3 {
		t.Fatalf("bob got %q (seq %d) and %q (seq %d); want his two messages, seqs 1 and 3", got[0].Text(), got[0].Seq, got[1].Text(), got[1].Seq)
	}
}

// TestRefreshesRefusedToken gives the client a token the server refuses
// and a refresh token: it refreshes, tells the application the new pair,
// and connects.
func TestRefreshesRefusedToken(t *testing.T) {
	srv := startChatd(t)
	bobID := srv.register(t, "bob")
	raw, _ := json.Marshal(map[string]string{"username": "alice", "password": "alice password"})
	res, err := http.Post(srv.base+"/v1/auth/register", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		UserID       string `json:"user_id"`
		RefreshToken string `json:"refresh_token"`
	}
	if res.StatusCode != http.StatusCreated || json.NewDecoder(res.Body).Decode(&reg) != nil {
		t.Fatalf("register: %s", res.Status)
	}
	_ = res.Body.Close()

	var gotAccess, gotRefresh string
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	alice, err := client.Dial(ctx, client.Options{
		MQTTAddr: srv.addrs.MQTT, HTTPBase: srv.base, DeviceID: "phone",
		UserID: reg.UserID, Token: "not.a.valid-token", RefreshToken: reg.RefreshToken,
		OnTokens: func(access, refresh string) { gotAccess, gotRefresh = access, refresh },
	})
	if err != nil {
		t.Fatalf("dial with a refused token and a refresh token: %v", err)
	}
	defer alice.Close()
	if gotAccess == "" || gotRefresh == "" || gotRefresh == reg.RefreshToken {
		t.Fatalf("OnTokens got access %q refresh %q; want a new pair", gotAccess, gotRefresh)
	}
	if _, err := alice.Send(ctx, "user:"+bobID, "refreshed"); err != nil {
		t.Fatal(err)
	}
}
