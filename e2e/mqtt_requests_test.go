package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Requests over MQTT: users/{me}/groups, sync, receipts and typing.

// reqEvent is any event a request produces on users/{me}/events (or on a
// response topic).
type reqEvent struct {
	Type           string          `json:"type"`
	OpID           string          `json:"op_id"`
	RequestID      string          `json:"request_id"`
	Op             string          `json:"op"`
	OK             bool            `json:"ok"`
	GroupID        string          `json:"group_id"`
	Group          *groupView      `json:"group"`
	AlreadyApplied bool            `json:"already_applied"`
	Code           string          `json:"code"`
	ReasonCode     byte            `json:"reason_code"`
	Message        string          `json:"message"`
	Topic          string          `json:"topic"`
	Chat           string          `json:"chat"`
	User           string          `json:"user"`
	Chats          []chatSummary   `json:"chats"`
	SyncCursor     string          `json:"sync_cursor"`
	Messages       []inboxMsg      `json:"messages"`
	Next           json.RawMessage `json:"next"` // a string (chat list) or a seq or null (history)
}

func decodeReqEvent(t *testing.T, payload []byte) reqEvent {
	t.Helper()
	var e reqEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		t.Fatalf("event %q: %v", payload, err)
	}
	return e
}

// device is a user's MQTT client of either protocol version, subscribed to
// users/{me}/#.
type device struct {
	ver  string // "v5" | "v3"
	acct account
	box  mailbox
	// pub publishes at QoS 1 and returns the v5 PUBACK reason (0 for 3.1.1).
	pub func(t *testing.T, topic string, payload []byte) byte
	// pub0 publishes at QoS 0.
	pub0 func(t *testing.T, topic string, payload []byte)
	// stash keeps, in arrival order, what next passed over: inbox
	// messages and events travel on two topics in no fixed order between
	// them, and a test may wait for either first.
	stash []received
}

// next returns the first received message matching pred, looking at what
// was passed over before.
func (d *device) next(t *testing.T, what string, pred func(received) bool) received {
	t.Helper()
	for i, r := range d.stash {
		if pred(r) {
			d.stash = slices.Delete(d.stash, i, i+1)
			return r
		}
	}
	deadline := time.After(waitTimeout)
	for {
		select {
		case r := <-d.box:
			if pred(r) {
				return r
			}
			d.stash = append(d.stash, r)
		case <-deadline:
			dumpGoroutines(t)
			t.Fatalf("%s: timed out waiting for %s", d.acct.Username, what)
		}
	}
}

var versions = []string{"v5", "v3"}

func dialDevice(t *testing.T, s *server, ver string, a account, name string) *device {
	t.Helper()
	d := &device{ver: ver, acct: a}
	if ver == "v5" {
		c := dialV5(t, tcpConn(t, s.addrs.MQTT), a, name)
		if rc := c.subscribe(t, "users/"+a.ID+"/#"); rc[0] != 1 {
			t.Fatalf("subscribe: 0x%02x", rc[0])
		}
		d.box = c.box
		d.pub = func(t *testing.T, topic string, payload []byte) byte {
			t.Helper()
			rc, err := c.publish(t, topic, payload)
			if rc == 0 && err != nil {
				t.Fatalf("publish %s: %v", topic, err)
			}
			return rc
		}
		d.pub0 = func(t *testing.T, topic string, payload []byte) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if _, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: payload}); err != nil {
				t.Fatalf("publish %s at QoS 0: %v", topic, err)
			}
		}
		return d
	}
	c := dialV3(t, "tcp://"+s.addrs.MQTT, a, name)
	if rc := c.subscribe(t, "users/"+a.ID+"/#"); rc != 1 {
		t.Fatalf("subscribe: 0x%02x", rc)
	}
	d.box = c.box
	d.pub = func(t *testing.T, topic string, payload []byte) byte {
		t.Helper()
		c.publish(t, topic, payload)
		return 0
	}
	d.pub0 = func(t *testing.T, topic string, payload []byte) {
		t.Helper()
		if tok := c.c.Publish(topic, 0, false, payload); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("publish %s at QoS 0: %v", topic, tok.Error())
		}
	}
	return d
}

// request publishes v (JSON-encoded unless it is []byte or a string) on
// users/{me}/{leaf} at QoS 1.
func (d *device) request(t *testing.T, leaf string, v any) byte {
	t.Helper()
	return d.pub(t, "users/"+d.acct.ID+"/"+leaf, requestPayload(t, v))
}

func requestPayload(t *testing.T, v any) []byte {
	t.Helper()
	switch p := v.(type) {
	case []byte:
		return p
	case string:
		return []byte(p)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// wantRC checks a v5 reason code; 3.1.1 PUBACKs carry none.
func (d *device) wantRC(t *testing.T, got, want byte) {
	t.Helper()
	if d.ver == "v5" && got != want {
		t.Fatalf("%s PUBACK reason 0x%02x, want 0x%02x", d.ver, got, want)
	}
}

// event waits for the next event of the given type on users/{me}/events.
func (d *device) event(t *testing.T, typ string) reqEvent {
	t.Helper()
	topic := "users/" + d.acct.ID + "/events"
	r := d.next(t, typ+" event", func(r received) bool {
		return r.Topic == topic && decodeReqEvent(t, r.Payload).Type == typ
	})
	return decodeReqEvent(t, r.Payload)
}

func (d *device) inbox(t *testing.T) inboxMsg {
	t.Helper()
	return d.next(t, "inbox message", onTopic("users/"+d.acct.ID+"/inbox")).inbox(t)
}

func (s *server) myGroups(t *testing.T, a account) []groupView {
	t.Helper()
	var out struct {
		Groups []groupView `json:"groups"`
	}
	if st := s.call(t, "GET", "/v1/groups", a.Token, nil, nil, &out); st != http.StatusOK {
		t.Fatalf("GET /v1/groups: %d", st)
	}
	return out.Groups
}

// TestMQTTGroupCreateByOpID: a group created over MQTT works like one made
// over REST, and a retried create (same op_id) finds the same group instead
// of making another.
func TestMQTTGroupCreateByOpID(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver, func(t *testing.T) {
			s := startServer(t, nil)
			alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
			a := dialDevice(t, s, ver, alice, "phone")
			b := dialDevice(t, s, "v5", bob, "phone")
			c := dialDevice(t, s, "v3", carol, "phone")

			create := map[string]any{"op_id": "op-create-1", "op": "create", "name": "trip", "user_ids": []string{bob.ID, carol.ID}}
			a.wantRC(t, a.request(t, "groups", create), 0)
			ev := a.event(t, "group_op")
			if !ev.OK || ev.OpID != "op-create-1" || ev.Op != "create" || ev.Group == nil || ev.GroupID != ev.Group.GroupID ||
				len(ev.Group.Members) != 3 || ev.Group.Name != "trip" || ev.Group.Chat != "g:"+ev.GroupID {
				t.Fatalf("create result %+v", ev)
			}
			g := *ev.Group

			// Members learn it like a REST-made group: the creation is seq 1.
			for _, d := range []*device{a, b, c} {
				if m := d.inbox(t); m.Chat != g.Chat || m.Seq != 1 || m.Type != "system" {
					t.Fatalf("%s: first group message %+v", d.acct.Username, m)
				}
				if gev := d.event(t, "group"); gev.Op != "created" || gev.GroupID != g.GroupID {
					t.Fatalf("%s: group event %+v", d.acct.Username, gev)
				}
			}
			// A message to it reaches everyone.
			b.request(t, "send", groupEnvelope(g.GroupID, "hello-1", "hello all"))
			for _, d := range []*device{a, b, c} {
				if m := d.inbox(t); m.Chat != g.Chat || m.Seq != 2 || m.CMID != "hello-1" {
					t.Fatalf("%s: group message %+v", d.acct.Username, m)
				}
			}

			// The retry: same op_id, same group, nothing new recorded.
			a.wantRC(t, a.request(t, "groups", create), 0)
			again := a.event(t, "group_op")
			if !again.OK || again.GroupID != g.GroupID || again.Group == nil || len(again.Group.Members) != 3 {
				t.Fatalf("retried create %+v, want group %s", again, g.GroupID)
			}
			if gs := s.myGroups(t, alice); len(gs) != 1 || gs[0].GroupID != g.GroupID {
				t.Fatalf("alice's groups after the retry: %+v", gs)
			}
			if page := s.history(t, bob, g.Chat, "?after=0"); len(page.Messages) != 2 {
				t.Fatalf("group history after the retry holds %d messages, want 2", len(page.Messages))
			}
			// Another op_id is another group.
			create["op_id"] = "op-create-2"
			a.request(t, "groups", create)
			if other := a.event(t, "group_op"); !other.OK || other.GroupID == g.GroupID {
				t.Fatalf("second create %+v", other)
			}
			if gs := s.myGroups(t, alice); len(gs) != 2 {
				t.Fatalf("alice has %d groups, want 2", len(gs))
			}
		})
	}
}

// TestMQTTGroupOps: the other operations, their refusals as ok:false
// results (with v5 reason codes), and retries that find nothing left to do.
func TestMQTTGroupOps(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver, func(t *testing.T) {
			s := startServer(t, nil)
			alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")
			var g groupView
			if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "team", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
				t.Fatalf("create group: %d", st)
			}
			a := dialDevice(t, s, ver, alice, "phone")
			b := dialDevice(t, s, ver, bob, "phone")
			op := func(opID, name string, kv ...any) map[string]any {
				m := map[string]any{"op_id": opID, "op": name}
				for i := 0; i < len(kv); i += 2 {
					m[kv[i].(string)] = kv[i+1]
				}
				return m
			}

			tests := []struct {
				name    string
				dev     *device
				payload any
				typ     string // "group_op" or "error"
				ok      bool
				code    string
				rc      byte
				opID    string // echoed op_id
				already bool
			}{
				{"rename", a, op("r1", "rename", "group_id", g.GroupID, "name", "the team"), "group_op", true, "", 0, "r1", false},
				{"rename again", a, op("r1", "rename", "group_id", g.GroupID, "name", "the team"), "group_op", true, "", 0, "r1", false},
				{"add members", a, op("am1", "add_members", "group_id", g.GroupID, "user_ids", []string{carol.ID}), "group_op", true, "", 0, "am1", false},
				{"add members again", a, op("am1", "add_members", "group_id", g.GroupID, "user_ids", []string{carol.ID}), "group_op", true, "", 0, "am1", false},
				{"set role", a, op("sr1", "set_role", "group_id", g.GroupID, "user_id", bob.ID, "role", "admin"), "group_op", true, "", 0, "sr1", false},
				{"remove member", a, op("rm1", "remove_member", "group_id", g.GroupID, "user_id", carol.ID), "group_op", true, "", 0, "rm1", false},
				{"remove member already gone", a, op("rm1", "remove_member", "group_id", g.GroupID, "user_id", carol.ID), "group_op", true, "", 0, "rm1", true},
				{"remove a stranger", a, op("rm2", "remove_member", "group_id", g.GroupID, "user_id", dave.ID), "group_op", true, "", 0, "rm2", true},
				{"not owner", b, op("d1", "delete", "group_id", g.GroupID), "group_op", false, "not_authorized", 0x87, "d1", false},
				{"admin may not set roles", b, op("sr2", "set_role", "group_id", g.GroupID, "user_id", alice.ID, "role", "member"), "group_op", false, "not_authorized", 0x87, "sr2", false},
				{"unknown group", a, op("u1", "rename", "group_id", "aaaaaaaaaaaaaaaaaaaa", "name", "x"), "group_op", false, "not_found", 0x87, "u1", false},
				{"malformed group id", a, op("u2", "rename", "group_id", "../x", "name", "x"), "group_op", false, "not_found", 0x87, "u2", false},
				{"owner cannot leave", a, op("l1", "remove_member", "group_id", g.GroupID, "user_id", alice.ID), "group_op", false, "conflict", 0x83, "l1", false},
				{"unknown member", a, op("am2", "add_members", "group_id", g.GroupID, "user_ids", []string{"aaaaaaaaaaaaaaaaaaaa"}), "group_op", false, "unknown_recipient", 0x87, "am2", false},
				{"bad role", a, op("sr3", "set_role", "group_id", g.GroupID, "user_id", bob.ID, "role", "king"), "group_op", false, "invalid_payload", 0x99, "sr3", false},
				{"empty name", a, op("c0", "create", "name", " "), "group_op", false, "invalid_payload", 0x99, "c0", false},
				{"unknown op", a, op("x1", "explode", "group_id", g.GroupID), "group_op", false, "invalid_payload", 0x99, "x1", false},
				{"missing field", a, op("x2", "add_members", "group_id", g.GroupID), "group_op", false, "invalid_payload", 0x99, "x2", false},
				{"field of another op", a, op("x3", "delete", "group_id", g.GroupID, "name", "x"), "group_op", false, "invalid_payload", 0x99, "x3", false},
				{"unknown field", a, op("x4", "rename", "group_id", g.GroupID, "name", "x", "colour", "red"), "group_op", false, "invalid_payload", 0x99, "x4", false},
				{"not json", a, "hello", "error", false, "invalid_payload", 0x99, "", false},
				{"trailing data", a, `{"op_id":"x5","op":"delete","group_id":"` + g.GroupID + `"} {}`, "group_op", false, "invalid_payload", 0x99, "x5", false},
				{"missing op_id", a, map[string]any{"op": "delete", "group_id": g.GroupID}, "error", false, "invalid_payload", 0x99, "", false},
				{"op_id with a space", a, op("has space", "delete", "group_id", g.GroupID), "error", false, "invalid_payload", 0x99, "", false},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.dev.wantRC(t, tc.dev.request(t, "groups", tc.payload), tc.rc)
					ev := tc.dev.event(t, tc.typ)
					if ev.OK != tc.ok || ev.Code != tc.code || ev.OpID != tc.opID || ev.AlreadyApplied != tc.already {
						t.Fatalf("%s event %+v, want ok=%v code=%q op_id=%q already=%v", tc.typ, ev, tc.ok, tc.code, tc.opID, tc.already)
					}
					if !tc.ok && (ev.Message == "" || ev.ReasonCode != tc.rc) {
						t.Fatalf("refusal without message or reason code: %+v", ev)
					}
					if tc.ok && tc.name != "remove a stranger" && tc.name != "remove member already gone" && ev.Group == nil {
						t.Fatalf("success without the group: %+v", ev)
					}
				})
			}

			var now groupView
			if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, alice.Token, nil, nil, &now); st != http.StatusOK || now.Name != "the team" || len(now.Members) != 2 {
				t.Fatalf("group after the operations: %d %+v", st, now)
			}

			// Delete, then its retry: nothing left to delete is a success.
			a.wantRC(t, a.request(t, "groups", op("del", "delete", "group_id", g.GroupID)), 0)
			if ev := a.event(t, "group_op"); !ev.OK || ev.AlreadyApplied || ev.GroupID != g.GroupID {
				t.Fatalf("delete %+v", ev)
			}
			a.request(t, "groups", op("del", "delete", "group_id", g.GroupID))
			if ev := a.event(t, "group_op"); !ev.OK || !ev.AlreadyApplied {
				t.Fatalf("retried delete %+v", ev)
			}
			if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, alice.Token, nil, nil, nil); st != http.StatusNotFound {
				t.Fatalf("deleted group: %d", st)
			}
		})
	}
}

// TestMQTTGroupCreateNotRepeatedAfterDelete: a create retried after its
// group was deleted does not bring the group (and its history) back.
func TestMQTTGroupCreateNotRepeatedAfterDelete(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	a := dialDevice(t, s, "v5", alice, "phone")
	create := map[string]any{"op_id": "c1", "op": "create", "name": "short-lived", "user_ids": []string{bob.ID}}
	a.request(t, "groups", create)
	ev := a.event(t, "group_op")
	if !ev.OK {
		t.Fatalf("create %+v", ev)
	}
	a.request(t, "groups", map[string]any{"op_id": "d1", "op": "delete", "group_id": ev.GroupID})
	if del := a.event(t, "group_op"); !del.OK {
		t.Fatalf("delete %+v", del)
	}
	a.wantRC(t, a.request(t, "groups", create), 0x87)
	if late := a.event(t, "group_op"); late.OK || late.Code != "not_found" {
		t.Fatalf("create retried after delete %+v", late)
	}
	if gs := s.myGroups(t, alice); len(gs) != 0 {
		t.Fatalf("alice's groups: %+v", gs)
	}
}

// TestMQTTSync: the chat list and history pages over MQTT are the REST
// answers, for clients of both versions.
func TestMQTTSync(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "team", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	c := dialV3(t, "tcp://"+s.addrs.MQTT, carol, "phone")
	ab := directChat(alice.ID, bob.ID)
	for i := 0; i < 7; i++ {
		a.send(t, bob.ID, fmt.Sprintf("ab-%d", i), "hi bob")
	}
	c.send(t, bob.ID, "cb-0", "hi bob")
	if rc, err := a.publish(t, "users/"+alice.ID+"/send", groupEnvelope(g.GroupID, "g-0", "hi all")); rc != 0 || err != nil {
		t.Fatalf("group send: 0x%02x %v", rc, err)
	}
	rest := s.allChats(t, bob, url.Values{})
	if len(rest.Chats) != 3 {
		t.Fatalf("REST chat list %+v", rest.Chats)
	}
	restHistory := s.historyAfter(t, bob, ab, 0)

	for _, ver := range versions {
		t.Run(ver, func(t *testing.T) {
			b := dialDevice(t, s, ver, bob, "sync-"+ver)

			// The chat list, paged two at a time.
			var got []chatSummary
			var cursor string
			req := map[string]any{"request_id": "list-1", "limit": 2}
			for pages := 0; ; pages++ {
				b.wantRC(t, b.request(t, "sync", req), 0)
				ev := b.event(t, "sync")
				if ev.RequestID != "list-1" || ev.SyncCursor == "" || len(ev.Chats) > 2 || pages > 3 {
					t.Fatalf("sync answer %+v", ev)
				}
				got = append(got, ev.Chats...)
				if cursor == "" {
					cursor = ev.SyncCursor
				}
				var next string
				if len(ev.Next) > 0 {
					if err := json.Unmarshal(ev.Next, &next); err != nil {
						t.Fatalf("next %s: %v", ev.Next, err)
					}
				}
				if next == "" {
					break
				}
				req["after"] = next
			}
			if len(got) != len(rest.Chats) {
				t.Fatalf("MQTT chat list has %d chats, REST %d", len(got), len(rest.Chats))
			}
			for i, ch := range got {
				r := rest.Chats[i]
				if ch.Chat != r.Chat || ch.LastSeq != r.LastSeq || ch.Unread != r.Unread || ch.Kind != r.Kind || ch.Title != r.Title ||
					ch.LastMessage == nil || ch.LastMessage.Seq != r.LastSeq {
					t.Fatalf("chat %d over MQTT %+v, over REST %+v", i, ch, r)
				}
			}
			// changed_since takes the cursor; every chat it reports is known.
			b.request(t, "sync", map[string]any{"changed_since": cursor})
			for _, ch := range b.event(t, "sync").Chats {
				if !slices.ContainsFunc(rest.Chats, func(r chatSummary) bool { return r.Chat == ch.Chat }) {
					t.Fatalf("unknown chat %s since the cursor", ch.Chat)
				}
			}

			// History, forward from the start, three at a time.
			var msgs []inboxMsg
			after := uint64(0)
			for pages := 0; ; pages++ {
				b.wantRC(t, b.request(t, "sync", map[string]any{"request_id": "h", "chat": ab, "after": after, "limit": 3}), 0)
				ev := b.event(t, "history")
				if ev.RequestID != "h" || ev.Chat != ab || pages > 3 {
					t.Fatalf("history answer %+v", ev)
				}
				msgs = append(msgs, ev.Messages...)
				var next *uint64
				if err := json.Unmarshal(ev.Next, &next); err != nil {
					t.Fatalf("next %s: %v", ev.Next, err)
				}
				if next == nil {
					break
				}
				after = *next
			}
			if len(msgs) != len(restHistory) {
				t.Fatalf("MQTT history has %d messages, REST %d", len(msgs), len(restHistory))
			}
			for i, m := range msgs {
				if r := restHistory[i]; m.Seq != r.Seq || m.CMID != r.CMID || m.ID != r.ID || m.SentAt != r.SentAt {
					t.Fatalf("message %d over MQTT %+v, over REST %+v", i, m, r)
				}
			}
			// Backwards: before=5 gives 3 and 4; next is 3.
			b.request(t, "sync", map[string]any{"chat": ab, "before": 5, "limit": 2})
			ev := b.event(t, "history")
			if len(ev.Messages) != 2 || ev.Messages[0].Seq != 3 || ev.Messages[1].Seq != 4 || string(ev.Next) != "3" {
				t.Fatalf("before page %+v next %s", ev.Messages, ev.Next)
			}

			tests := []struct {
				name    string
				payload any
				code    string
				rc      byte
				reqID   string
			}{
				{"not a member", map[string]any{"request_id": "nm", "chat": directChat(alice.ID, carol.ID)}, "not_authorized", 0x87, "nm"},
				{"no such chat", map[string]any{"request_id": "nc", "chat": "nonsense"}, "not_found", 0x87, "nc"},
				{"after as string in history", map[string]any{"request_id": "as", "chat": ab, "after": "3"}, "invalid_payload", 0x99, "as"},
				{"after and before", map[string]any{"chat": ab, "after": 1, "before": 3}, "invalid_payload", 0x99, ""},
				{"limit 0", map[string]any{"limit": 0}, "invalid_payload", 0x99, ""},
				{"limit 201", map[string]any{"chat": ab, "limit": 201}, "invalid_payload", 0x99, ""},
				{"bad cursor", map[string]any{"request_id": "bc", "changed_since": "yesterday"}, "invalid_payload", 0x99, "bc"},
				{"bad page cursor", map[string]any{"after": "nope"}, "invalid_payload", 0x99, ""},
				{"unknown field", map[string]any{"request_id": "uf", "chats": ab}, "invalid_payload", 0x99, "uf"},
				{"bad request id", map[string]any{"request_id": "has space"}, "invalid_payload", 0x99, ""},
				{"not json", "sync please", "invalid_payload", 0x99, ""},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					b.wantRC(t, b.request(t, "sync", tc.payload), tc.rc)
					ev := b.event(t, "error")
					if ev.Code != tc.code || ev.ReasonCode != tc.rc || ev.RequestID != tc.reqID || ev.Message == "" || ev.Topic != "users/"+bob.ID+"/sync" {
						t.Fatalf("error event %+v, want %s request_id %q", ev, tc.code, tc.reqID)
					}
				})
			}
		})
	}
}

// propsMsg is a publish received with its MQTT 5 properties.
type propsMsg struct {
	Topic       string
	Payload     []byte
	Correlation []byte
}

// dialV5Props connects an MQTT 5 client that keeps received properties.
func dialV5Props(t *testing.T, s *server, a account, device string) (*paho.Client, chan propsMsg) {
	t.Helper()
	box := make(chan propsMsg, 256)
	c := paho.NewClient(paho.ClientConfig{
		Conn: tcpConn(t, s.addrs.MQTT),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			m := propsMsg{Topic: p.Packet.Topic, Payload: p.Packet.Payload}
			if p.Packet.Properties != nil {
				m.Correlation = p.Packet.Properties.CorrelationData
			}
			box <- m
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{
		ClientID: a.ID + "/" + device, Username: a.ID, UsernameFlag: true, Password: []byte(a.Token), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true,
	}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if ack, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "users/" + a.ID + "/responses/#", QoS: 1}, {Topic: "users/" + a.ID + "/events", QoS: 1},
	}}); err != nil || ack.Reasons[0] != 1 || ack.Reasons[1] != 1 {
		t.Fatalf("subscribe: %v %+v", err, ack)
	}
	return c, box
}

func nextProps(t *testing.T, box chan propsMsg, what string, pred func(propsMsg) bool) propsMsg {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case m := <-box:
			if pred(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestMQTTSyncResponseTopic: an MQTT 5 request naming a Response Topic in
// its owner's subtree is answered there with its Correlation Data; one
// naming anything else is refused 0x87.
func TestMQTTSyncResponseTopic(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.send(t, bob.ID, "m1", "hi")
	a.subscribe(t, "users/"+alice.ID+"/#")
	b, box := dialV5Props(t, s, bob, "phone")

	request := func(rt string, corr []byte, payload string) (byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		resp, err := b.Publish(ctx, &paho.Publish{
			Topic: "users/" + bob.ID + "/sync", QoS: 1, Payload: []byte(payload),
			Properties: &paho.PublishProperties{ResponseTopic: rt, CorrelationData: corr},
		})
		if resp == nil {
			t.Fatalf("publish: %v", err)
		}
		return resp.ReasonCode, err
	}
	mine := "users/" + bob.ID + "/responses/sync-1"
	events := "users/" + bob.ID + "/events"

	tests := []struct {
		name    string
		topic   string // response topic
		payload string
		rc      byte
		answer  string // topic the answer (or error) arrives on
		typ     string
	}{
		{"chat list on a responses topic", mine, `{"request_id":"r1"}`, 0, mine, "sync"},
		{"history on a responses topic", mine, `{"chat":"` + directChat(alice.ID, bob.ID) + `","after":0}`, 0, mine, "history"},
		{"answer on the events topic", events, `{}`, 0, events, "sync"},
		{"deeper responses topic", mine + "/a/b", `{}`, 0, mine + "/a/b", "sync"},
		{"errors follow the response topic", mine, `{"chat":"nonsense"}`, 0x87, mine, "error"},
		{"another user's subtree", "users/" + alice.ID + "/responses/x", `{"request_id":"r2"}`, 0x87, events, "error"},
		{"another user's events", "users/" + alice.ID + "/events", `{}`, 0x87, events, "error"},
		{"own inbox", "users/" + bob.ID + "/inbox", `{}`, 0x87, events, "error"},
		{"own send", "users/" + bob.ID + "/send", `{}`, 0x87, events, "error"},
		{"responses root", "users/" + bob.ID + "/responses", `{}`, 0x87, events, "error"},
		{"outside users/", "replies/" + bob.ID, `{}`, 0x87, events, "error"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			corr := []byte(fmt.Sprintf("corr-%d", i))
			if rc, _ := request(tc.topic, corr, tc.payload); rc != tc.rc {
				t.Fatalf("PUBACK 0x%02x, want 0x%02x", rc, tc.rc)
			}
			m := nextProps(t, box, "answer", func(m propsMsg) bool { return m.Topic == tc.answer })
			ev := decodeReqEvent(t, m.Payload)
			if ev.Type != tc.typ {
				t.Fatalf("answer %s on %s, want type %s", m.Payload, m.Topic, tc.typ)
			}
			wantCorr := corr
			if tc.rc != 0 && tc.answer == events {
				wantCorr = nil // refused response topic: a plain error event
			}
			if string(m.Correlation) != string(wantCorr) {
				t.Fatalf("correlation data %q, want %q", m.Correlation, wantCorr)
			}
			if tc.typ == "error" && ev.ReasonCode != tc.rc {
				t.Fatalf("error event %+v", ev)
			}
		})
	}

	// Nothing reached alice's subtree: the next thing she gets is the answer
	// to her own request.
	if rc, err := a.publish(t, "users/"+alice.ID+"/sync", []byte(`{"request_id":"alice-marker"}`)); rc != 0 || err != nil {
		t.Fatalf("alice sync: 0x%02x %v", rc, err)
	}
	r := a.box.next(t, "alice's answer", func(r received) bool { return r.Topic != "users/"+alice.ID+"/inbox" })
	if ev := decodeReqEvent(t, r.Payload); r.Topic != "users/"+alice.ID+"/events" || ev.RequestID != "alice-marker" {
		t.Fatalf("alice received %s on %s before her own answer", r.Payload, r.Topic)
	}
}

// TestMQTTReceipts: read receipts over MQTT move read_seq like POST
// /v1/chats/{chat}/read, never backwards.
func TestMQTTReceipts(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver, func(t *testing.T) {
			s := startServer(t, nil)
			alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
			a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
			for i := 0; i < 5; i++ {
				a.send(t, bob.ID, fmt.Sprintf("m%d", i), "hi")
			}
			b := dialDevice(t, s, ver, bob, "phone")
			ab := directChat(alice.ID, bob.ID)
			readSeq := func() (read, unread uint64) {
				t.Helper()
				for _, ch := range s.allChats(t, bob, url.Values{}).Chats {
					if ch.Chat == ab {
						return ch.ReadSeq, ch.Unread
					}
				}
				t.Fatalf("%s not in bob's chat list", ab)
				return 0, 0
			}

			for _, step := range []struct {
				seq, want uint64
			}{{3, 3}, {1, 3}, {3, 3}, {4, 4}, {99, 5}} {
				b.wantRC(t, b.request(t, "receipts", map[string]any{"chat": ab, "read_seq": step.seq}), 0)
				if read, unread := readSeq(); read != step.want || unread != 5-step.want {
					t.Fatalf("after read_seq %d: read_seq %d unread %d, want %d", step.seq, read, unread, step.want)
				}
			}

			tests := []struct {
				name    string
				payload any
				code    string
				rc      byte
			}{
				{"not a member", map[string]any{"chat": directChat(alice.ID, carol.ID), "read_seq": 1}, "not_authorized", 0x87},
				{"read_seq 0", map[string]any{"chat": ab, "read_seq": 0}, "invalid_payload", 0x99},
				{"negative read_seq", `{"chat":"` + ab + `","read_seq":-1}`, "invalid_payload", 0x99},
				{"missing chat", map[string]any{"read_seq": 1}, "invalid_payload", 0x99},
				{"unknown field", map[string]any{"chat": ab, "sequence": 1}, "invalid_payload", 0x99},
				{"not json", "read", "invalid_payload", 0x99},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					b.wantRC(t, b.request(t, "receipts", tc.payload), tc.rc)
					if ev := b.event(t, "error"); ev.Code != tc.code || ev.ReasonCode != tc.rc || ev.Topic != "users/"+bob.ID+"/receipts" {
						t.Fatalf("error event %+v, want %s", ev, tc.code)
					}
				})
			}
			if read, _ := readSeq(); read != 5 {
				t.Fatalf("read_seq %d after refused receipts, want 5", read)
			}
		})
	}
}

// TestMQTTTyping: a typing notice reaches the chat's other members' devices
// as an event (not the sender's), is rate-limited per (user, chat), never
// stored, and refused for non-members.
func TestMQTTTyping(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "team", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	a := dialDevice(t, s, "v5", alice, "phone")
	b := dialDevice(t, s, "v3", bob, "phone")
	c := dialDevice(t, s, "v5", carol, "phone")
	d := dialDevice(t, s, "v5", dave, "phone")
	ab := directChat(alice.ID, bob.ID)
	typing := func(chat string) []byte { return []byte(`{"chat":"` + chat + `"}`) }
	topic := func(dev *device) string { return "users/" + dev.acct.ID + "/typing" }

	a.pub0(t, topic(a), typing(ab))
	a.pub0(t, topic(a), typing(ab)) // within 2 s of the first: dropped silently
	a.wantRC(t, a.pub(t, topic(a), typing(ab)), 0x97)
	if ev := a.event(t, "error"); ev.Code != "quota_exceeded" || ev.ReasonCode != 0x97 {
		t.Fatalf("rate-limited typing at QoS 1: %+v", ev)
	}
	a.pub0(t, topic(a), typing(g.Chat)) // another chat, another budget

	// bob hears alice in the 1:1 chat once, then in the group.
	for _, want := range []string{ab, g.Chat} {
		if ev := b.event(t, "typing"); ev.Chat != want || ev.User != alice.ID {
			t.Fatalf("bob got typing %+v, want %s from alice", ev, want)
		}
	}
	if ev := c.event(t, "typing"); ev.Chat != g.Chat || ev.User != alice.ID {
		t.Fatalf("carol got typing %+v", ev)
	}
	// alice heard none of her own notices: her next event is her marker.
	a.request(t, "sync", map[string]any{"request_id": "marker"})
	r := a.next(t, "alice's marker", onTopic("users/"+alice.ID+"/events"))
	if ev := decodeReqEvent(t, r.Payload); ev.Type != "sync" || ev.RequestID != "marker" {
		t.Fatalf("alice received %s before her marker", r.Payload)
	}

	// A 3.1.1 client types too; QoS 1 is accepted.
	b.request(t, "typing", typing(ab))
	if ev := a.event(t, "typing"); ev.Chat != ab || ev.User != bob.ID {
		t.Fatalf("alice got typing %+v", ev)
	}

	// Non-members and bad notices are refused.
	tests := []struct {
		name    string
		payload string
		code    string
		rc      byte
	}{
		{"stranger in a 1:1 chat", string(typing(ab)), "not_authorized", 0x87},
		{"stranger in a group", string(typing(g.Chat)), "not_authorized", 0x87},
		{"not a chat", string(typing("nonsense")), "not_found", 0x87},
		{"missing chat", `{}`, "invalid_payload", 0x99},
		{"unknown field", `{"chat":"` + ab + `","state":"on"}`, "invalid_payload", 0x99},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d.wantRC(t, d.pub(t, topic(d), []byte(tc.payload)), tc.rc)
			if ev := d.event(t, "error"); ev.Code != tc.code || ev.ReasonCode != tc.rc {
				t.Fatalf("error event %+v, want %s", ev, tc.code)
			}
		})
	}
	// Refused at QoS 0 too: the error event still comes.
	d.pub0(t, topic(d), typing(directChat(bob.ID, carol.ID)))
	if ev := d.event(t, "error"); ev.Code != "not_authorized" {
		t.Fatalf("QoS 0 stranger typing: %+v", ev)
	}

	// After 2 s alice may type in the 1:1 chat again.
	time.Sleep(2100 * time.Millisecond)
	a.wantRC(t, a.pub(t, topic(a), typing(ab)), 0)
	if ev := b.event(t, "typing"); ev.Chat != ab || ev.User != alice.ID {
		t.Fatalf("bob got typing %+v", ev)
	}

	// Typing is never stored.
	if page := s.history(t, bob, ab, "?after=0"); len(page.Messages) != 0 {
		t.Fatalf("1:1 chat holds %d messages", len(page.Messages))
	}
}

// TestRequestTopicsAreOwnerOnly: the request topics and responses/ are
// publish-only and subscribe-only for their owner.
func TestRequestTopicsAreOwnerOnly(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.subscribe(t, "users/"+alice.ID+"/events")
	for _, leaf := range []string{"groups", "sync", "receipts", "typing", "responses/x"} {
		t.Run(leaf, func(t *testing.T) {
			if rc, _ := a.publish(t, "users/"+bob.ID+"/"+leaf, []byte(`{}`)); rc != 0x87 {
				t.Fatalf("publish to bob's %s: 0x%02x", leaf, rc)
			}
			if ev := a.box.next(t, "error", onEvent(alice.ID, "error")).event(t); ev.Code != "not_authorized" {
				t.Fatalf("error event %+v", ev)
			}
			if rc := a.subscribe(t, "users/"+alice.ID+"/"+leaf); leaf != "responses/x" && rc[0] != 0x87 {
				t.Fatalf("subscribe to own %s: 0x%02x", leaf, rc[0])
			}
		})
	}
	if rc, _ := a.publish(t, "users/"+alice.ID+"/responses/x", []byte(`{}`)); rc != 0x87 {
		t.Fatalf("publish to own responses: 0x%02x", rc)
	}
	if rc := a.subscribe(t, "users/"+bob.ID+"/responses/#"); rc[0] != 0x87 {
		t.Fatalf("subscribe to bob's responses: 0x%02x", rc[0])
	}
	if rc := a.subscribe(t, "users/"+alice.ID+"/responses/#"); rc[0] != 1 {
		t.Fatalf("subscribe to own responses: 0x%02x", rc[0])
	}
}
