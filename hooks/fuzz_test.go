package hooks

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/devicemsg"
	"github.com/mqchat/mqchat/store"
)

// Fuzz targets for what a client hands the hooks: topics and filters, the
// client id, the request payloads on users/{me}/groups, sync, receipts and
// typing, and the inbox payloads the Delivery hook reads back.

// wantRequestRefusal fails unless err is a refusal with one of the codes
// and a message: never a panic, never an internal error.
func wantRequestRefusal(t *testing.T, what string, err error, codes ...chat.Code) {
	t.Helper()
	var e *chat.Error
	if !errors.As(err, &e) || !slices.Contains(codes, e.Code) || e.Message == "" {
		t.Fatalf("%s: error %#v, want a refusal with a message and one of %v", what, err, codes)
	}
	// Clients speak JSON: no Go type or struct names (a client's own
	// unknown key is echoed, so only the decoder's vocabulary counts).
	for _, leak := range []string{"Go struct", "uint64", "json: "} {
		if strings.Contains(e.Message, leak) {
			t.Fatalf("%s: message %q names Go internals", what, e.Message)
		}
	}
}

// strictJSON is the request decoding rule in plain encoding/json terms:
// json.Unmarshal takes exactly one value, and a Decoder refuses unknown
// fields (json.Unmarshal alone ignores them).
func strictJSON(p []byte, v any) error {
	if err := json.Unmarshal(p, v); err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(p)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// requestSeeds are payloads every request decoder meets.
var requestSeeds = []string{
	``, ` `, `null`, `[]`, `"x"`, `1`, `{`, `{}`, `{} {}`, `{}}`, `{"a":1}`, `{"chat":"x"} x`,
	"{\"chat\":\"\xff\"}", `{"chat":"\u0000"}`,
}

// wantPeekedID checks the id an error event may carry for a refused
// request: empty, or a valid id that the payload itself holds.
func wantPeekedID(t *testing.T, payload []byte, key, id string) {
	t.Helper()
	if id == "" {
		return
	}
	var fields map[string]any
	if validID(id) && json.NewDecoder(strings.NewReader(string(payload))).Decode(&fields) == nil {
		// encoding/json matches keys case-insensitively.
		for k, v := range fields {
			if strings.EqualFold(k, key) && v == id {
				return
			}
		}
	}
	t.Fatalf("%q: error event names %s %q", payload, key, id)
}

func FuzzDecodeGroupOp(f *testing.F) {
	u, g := ids.NewUserID(), ids.NewUserID()
	for _, s := range append(slices.Clone(requestSeeds),
		`{"op_id":"o1","op":"create","name":"trip","user_ids":["`+u+`"]}`,
		`{"op_id":"o2","op":"create","name":"solo"}`,
		`{"op_id":"o3","op":"rename","group_id":"`+g+`","name":"x"}`,
		`{"op_id":"o4","op":"delete","group_id":"`+g+`"}`,
		`{"op_id":"o5","op":"add_members","group_id":"`+g+`","user_ids":["`+u+`"]}`,
		`{"op_id":"o6","op":"remove_member","group_id":"`+g+`","user_id":"`+u+`"}`,
		`{"op_id":"o7","op":"set_role","group_id":"`+g+`","user_id":"`+u+`","role":"admin"}`,
		`{"op_id":"o8","op":"add_members","group_id":"`+g+`","user_ids":[]}`,
		`{"op_id":"o9","op":"delete","group_id":"../x"}`,
		`{"op_id":"o10","op":"rename","group_id":"`+g+`"}`,
		`{"op_id":"o11","op":"delete","group_id":"`+g+`","name":"x"}`,
		`{"op_id":"o12","op":"explode"}`,
		`{"op_id":"a b","op":"delete","group_id":"`+g+`"}`,
		`{"op_id":"o13","op":"delete","group_id":"`+g+`","colour":"red"}`,
		`{"op_id":"o14","op":"delete","group_id":"`+g+`"} trailing`,
		`{"op_id":"o15","op":"create","name":"x","user_ids":null}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := decodeGroupOp(payload)
		if err != nil {
			wantRequestRefusal(t, "decodeGroupOp", err, chat.CodeInvalid, chat.CodeTooLarge, chat.CodeNotFound)
			// The group_op result echoes op_id; only a valid one that the
			// request really holds.
			if req.OpID != "" {
				wantPeekedID(t, payload, "op_id", req.OpID)
			}
			return
		}
		fields, known := groupOpFields[req.Op]
		if !validID(req.OpID) || !known {
			t.Fatalf("%q: accepted %+v", payload, req)
		}
		set := map[string]bool{
			"group_id": req.GroupID != "", "name": req.Name != "", "user_ids": req.UserIDs != nil,
			"user_id": req.UserID != "", "role": req.Role != "",
		}
		for f, isSet := range set {
			required, optional := slices.Contains(fields, f), slices.Contains(fields, "?"+f)
			if isSet && !required && !optional || !isSet && required {
				t.Fatalf("%q: %s accepted with %s set=%v", payload, req.Op, f, isSet)
			}
		}
		if req.GroupID != "" && !ids.ValidUserID(req.GroupID) || req.Op == "add_members" && len(req.UserIDs) == 0 {
			t.Fatalf("%q: accepted %+v", payload, req)
		}
		var ref groupOpRequest
		if err := strictJSON(payload, &ref); err != nil {
			t.Fatalf("%q accepted, encoding/json: %v", payload, err)
		}
		// A client re-sending what it got back is accepted as the same op.
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeGroupOp(enc)
		if err != nil || again.OpID != req.OpID || again.Op != req.Op || again.GroupID != req.GroupID ||
			again.Name != req.Name || again.UserID != req.UserID || again.Role != req.Role || !slices.Equal(again.UserIDs, req.UserIDs) {
			t.Fatalf("round trip of %+v: %+v, %v", req, again, err)
		}
	})
}

func FuzzDecodeSync(f *testing.F) {
	c := chat.DirectChatID(ids.NewUserID(), ids.NewUserID())
	for _, s := range append(slices.Clone(requestSeeds),
		`{"request_id":"r1"}`,
		`{"request_id":"r2","changed_since":"1733000000000","after":"1733000000000:`+c+`","limit":200}`,
		`{"request_id":"r3","chat":"`+c+`","after":0,"limit":1}`,
		`{"chat":"`+c+`","before":18446744073709551615}`,
		`{"chat":"`+c+`","after":5,"before":9}`,
		`{"chat":"`+c+`","after":null,"before":9}`,
		`{"chat":"`+c+`","after":-1}`,
		`{"chat":"`+c+`","after":"5"}`,
		`{"chat":"`+c+`","changed_since":"1"}`,
		`{"before":1}`,
		`{"after":5}`,
		`{"limit":0}`, `{"limit":201}`, `{"limit":1.5}`, `{"limit":-9223372036854775809}`,
		`{"changed_since":"-1"}`, `{"changed_since":"x"}`,
		`{"request_id":"a b","limit":0}`,
		`{"request_id":"r4","limit":0}`,
		`{"request_id":"r5","chat":"x","colour":"red"}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		q, err := decodeSync(payload)
		if err != nil {
			wantRequestRefusal(t, "decodeSync", err, chat.CodeInvalid, chat.CodeTooLarge)
			wantPeekedID(t, payload, "request_id", q.requestID)
			return
		}
		var req syncRequest
		if err := strictJSON(payload, &req); err != nil {
			t.Fatalf("%q accepted, encoding/json: %v", payload, err)
		}
		if q.requestID != req.RequestID || q.requestID != "" && !validID(q.requestID) || q.chat != req.Chat {
			t.Fatalf("%q: decoded %+v", payload, q)
		}
		limit := q.list.Limit
		if q.chat != "" {
			limit = q.page.Limit
		}
		if limit < 1 || limit > 200 || req.Limit == nil && limit != defaultSyncPage || req.Limit != nil && limit != *req.Limit {
			t.Fatalf("%q: limit %d", payload, limit)
		}
		if q.chat == "" {
			if q.page != (chat.PageQuery{}) || req.Before != nil ||
				!q.list.ChangedSince.IsZero() && q.list.ChangedSince.UnixMilli() < 0 {
				t.Fatalf("%q: chat-list request decoded as %+v", payload, q)
			}
			var after string
			if !isNull(req.After) && (json.Unmarshal(req.After, &after) != nil || after != q.list.After) {
				t.Fatalf("%q: after %q", payload, q.list.After)
			}
			return
		}
		p := q.page
		if p.Forward == isNull(req.After) || p.Forward && p.Before != 0 || req.Before != nil && p.Before != *req.Before ||
			q.list != (chat.ListQuery{}) || req.ChangedSince != "" {
			t.Fatalf("%q: history request decoded as %+v", payload, q)
		}
	})
}

func FuzzDecodeReceipt(f *testing.F) {
	c := chat.DirectChatID(ids.NewUserID(), ids.NewUserID())
	for _, s := range append(slices.Clone(requestSeeds),
		`{"chat":"`+c+`","read_seq":1}`,
		`{"chat":"`+c+`","read_seq":18446744073709551615}`,
		`{"chat":"`+c+`","read_seq":18446744073709551616}`,
		`{"chat":"`+c+`","read_seq":0}`,
		`{"chat":"`+c+`","read_seq":-1}`,
		`{"chat":"`+c+`","read_seq":1e2}`,
		`{"chat":"","read_seq":1}`,
		`{"read_seq":1}`,
		`{"chat":"`+c+`","seq":1}`,
		`{"chat":"`+c+`","seq":-1}`,
		`{"chat":"`+c+`","seq":2,"read_seq":2}`,
		`{"chat":"`+c+`","seq":2,"read_seq":3}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := decodeReceipt(payload)
		if err != nil {
			wantRequestRefusal(t, "decodeReceipt", err, chat.CodeInvalid, chat.CodeTooLarge)
			return
		}
		var ref receiptRequest
		err = strictJSON(payload, &ref)
		if ref.ReadSeq == 0 || ref.ReadSeq == ref.Seq {
			ref.ReadSeq = ref.Seq // seq is read_seq's alias: the two never disagree
		} else if ref.Seq != 0 {
			t.Fatalf("%q: accepted read_seq %d with seq %d", payload, ref.ReadSeq, ref.Seq)
		}
		if err != nil || ref.ReadSeq != req.ReadSeq || ref.Chat != req.Chat || req.Chat == "" || req.ReadSeq == 0 {
			t.Fatalf("%q: decoded %+v, encoding/json %+v, %v", payload, req, ref, err)
		}
	})
}

func FuzzDecodeTyping(f *testing.F) {
	c := chat.DirectChatID(ids.NewUserID(), ids.NewUserID())
	for _, s := range append(slices.Clone(requestSeeds),
		`{"chat":"`+c+`"}`, `{"chat":""}`, `{"chat":1}`, `{"chat":"`+c+`","typing":true}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := decodeTyping(payload)
		if err != nil {
			wantRequestRefusal(t, "decodeTyping", err, chat.CodeInvalid, chat.CodeTooLarge)
			return
		}
		var ref typingRequest
		if err := strictJSON(payload, &ref); err != nil || ref != req || req.Chat == "" {
			t.Fatalf("%q: decoded %+v, encoding/json %+v, %v", payload, req, ref, err)
		}
	})
}

// TestRequestSizeLimit: every request decoder refuses a payload past
// maxRequestBytes as too large, and takes one exactly at it. (The fuzz
// targets keep to small inputs: mutating 64 KiB ones would slow them down
// a hundredfold.)
func TestRequestSizeLimit(t *testing.T) {
	pad := func(head, tail string, n int) []byte {
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	decoders := map[string]func([]byte) error{
		"groups":   func(p []byte) error { _, err := decodeGroupOp(p); return err },
		"sync":     func(p []byte) error { _, err := decodeSync(p); return err },
		"receipts": func(p []byte) error { _, err := decodeReceipt(p); return err },
		"typing":   func(p []byte) error { _, err := decodeTyping(p); return err },
	}
	atLimit := map[string][]byte{
		"groups":   pad(`{"op_id":"o","op":"create","name":"`, `"}`, maxRequestBytes),
		"sync":     pad(`{"chat":"`, `"}`, maxRequestBytes),
		"receipts": pad(`{"read_seq":1,"chat":"`, `"}`, maxRequestBytes),
		"typing":   pad(`{"chat":"`, `"}`, maxRequestBytes),
	}
	for name, decode := range decoders {
		if err := decode(atLimit[name]); err != nil {
			t.Errorf("%s: %d bytes refused: %v", name, maxRequestBytes, err)
		}
		over := append(atLimit[name], ' ')
		wantRequestRefusal(t, name, decode(over), chat.CodeTooLarge)
	}
}

// validFilter reports whether mochi takes filter in a SUBSCRIBE at all
// (the ACL is asked only then), as processSubscribe checks it.
func validFilter(filter string) bool {
	return mqtt.IsValidFilter(filter, false) && !strings.ContainsRune(filter, 0) && strings.ToValidUTF8(filter, "") == filter
}

// matches reports whether mochi's own topic index delivers a publish on
// topic to a subscription to filter.
func matches(filter, topic string) bool {
	x := mqtt.NewTopicsIndex()
	x.Subscribe("c", packets.Subscription{Filter: filter})
	subs := x.Subscribers(topic)
	return len(subs.Subscriptions) > 0 || len(subs.Shared) > 0
}

// ownRead reports whether a user may receive a publish on topic: its own
// subtree or its own presence.
// ownRead reports whether topic lies in uid's own space: its subtree
// (the root included: users/{uid}/# matches users/{uid}, which nobody may
// publish to and the concrete-topic check refuses anyway) or its presence.
func ownRead(uid, topic string) bool {
	return strings.HasPrefix(topic, "users/"+uid+"/") || topic == "users/"+uid || topic == "presence/"+uid
}

func FuzzTopicAccess(f *testing.F) {
	me, other := ids.NewUserID(), ids.NewUserID()
	for _, s := range [][3]string{
		{me, "users/" + me + "/#", "users/" + me + "/inbox"},
		{me, "users/" + me + "/responses/+", "users/" + me + "/responses/x"},
		{me, "users/" + me + "/responses/#", "users/" + me + "/responses"},
		{me, "presence/" + other, "presence/" + other},
		{me, "users/+/inbox", "users/" + other + "/inbox"},
		{me, "$share/g/users/" + me + "/inbox", "users/" + me + "/inbox"},
		{"", "$share/g/#", "users/" + me + "/inbox"},
		{"", "#", "presence/" + me},
		{"", "+/" + me + "/inbox", "users/" + me + "/inbox"},
		{"", "plain/#", "plain/x"},
		{"", "$SYS/#", "$SYS/broker/uptime"},
		{me, "users/" + me + "/send", "users/" + me + "/send"},
		{me, "users/" + me + "/responses/\x00", "users/" + other + "/events"},
		{"", "users", "users"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, uid, filter, topic string) {
		// Users' ids are what authentication lets through: ids, or "".
		if uid != "" && !ids.ValidUserID(uid) {
			uid = me
		}
		if owner, leaf, ok := splitUserTopic(topic); ok && (owner == "" || strings.Contains(owner, "/") || "users/"+owner+"/"+leaf != topic) {
			t.Fatalf("splitUserTopic(%q) = %q, %q", topic, owner, leaf)
		}

		// Writes: a user only its own request topics, anonymous clients
		// nothing in the chat namespace.
		w := writeAccess(uid, topic)
		if uid == "" {
			if w == (strings.HasPrefix(topic, "users/") || strings.HasPrefix(topic, "presence/") || topic == "users" || topic == "presence") {
				t.Fatalf("writeAccess(anonymous, %q) = %v", topic, w)
			}
		} else {
			mine := false
			for _, leaf := range []string{LeafSend, LeafGroups, LeafSync, LeafReceipts, LeafTyping} {
				mine = mine || topic == "users/"+uid+"/"+leaf
			}
			if w != mine {
				t.Fatalf("writeAccess(%q, %q) = %v", uid, topic, w)
			}
		}

		// Reads are checked twice by mochi: the filter at SUBSCRIBE and the
		// concrete topic before every delivery. A concrete topic passes
		// only inside the reader's own space (or another user's presence,
		// which the relation then decides).
		if mqtt.IsValidFilter(topic, true) {
			ok, rel := readAccess(uid, topic)
			switch {
			case uid == "" && ok && (strings.HasPrefix(topic, "users/") || strings.HasPrefix(topic, "presence/")):
				t.Fatalf("anonymous may read %q", topic)
			case uid != "" && ok && !ownRead(uid, topic):
				t.Fatalf("%s may read %q", uid, topic)
			case rel != "" && (ok || uid == "" || topic != "presence/"+rel || !ids.ValidUserID(uid)):
				t.Fatalf("readAccess(%q, %q) = %v, relation %q", uid, topic, ok, rel)
			}
		}
		if !validFilter(filter) {
			return
		}
		ok, rel := readAccess(uid, filter)
		if rel != "" && (ok || filter != "presence/"+rel || hasWildcard(rel) || strings.Contains(rel, "/")) {
			t.Fatalf("readAccess(%q, %q) = %v, relation %q", uid, filter, ok, rel)
		}
		if !ok || !mqtt.IsValidFilter(topic, true) || !matches(filter, topic) {
			return
		}
		// A granted filter reaches only the reader's own space (for a user).
		// An anonymous client may hold filters that also match chat topics
		// (`#`, `+/…`): every delivery, retained ones included, meets the
		// concrete-topic check above. A filter that names the chat
		// namespace outright can only ever match chat topics, so it is
		// refused, shared or not.
		switch {
		case uid != "" && !ownRead(uid, topic):
			t.Fatalf("%s subscribed to %q, which matches %q", uid, filter, topic)
		case uid == "":
			plain := filter
			if mqtt.IsSharedFilter(plain) {
				if parts := strings.SplitN(plain, "/", 3); len(parts) == 3 {
					plain = parts[2]
				}
			}
			if first, _, _ := strings.Cut(plain, "/"); first == "users" || first == "presence" {
				t.Fatalf("anonymous subscribed to %q, inside the chat namespace", filter)
			}
		}
	})
}

func FuzzResponseTopic(f *testing.F) {
	me, other := ids.NewUserID(), ids.NewUserID()
	for _, s := range []string{
		"users/" + me + "/events", "users/" + me + "/responses/x", "users/" + me + "/responses/", "users/" + me + "/responses/#",
		"users/" + me + "/inbox", "users/" + other + "/events", "users/" + me + "/responses/a/+", "users/" + me,
	} {
		f.Add(me, s)
	}
	f.Fuzz(func(t *testing.T, uid, topic string) {
		if !validResponseTopic(uid, topic) {
			return
		}
		rest, ok := strings.CutPrefix(topic, "users/"+uid+"/")
		if uid == "" || strings.Contains(uid, "/") || !ok || hasWildcard(topic) ||
			rest != LeafEvents && (!strings.HasPrefix(rest, LeafResponses+"/") || rest == LeafResponses+"/") {
			t.Fatalf("validResponseTopic(%q, %q) = true", uid, topic)
		}
		// Whatever it names, the requester itself may read it.
		if ids.ValidUserID(uid) {
			if can, _ := readAccess(uid, topic); !can {
				t.Fatalf("%s may not read its own response topic %q", uid, topic)
			}
		}
	})
}

func FuzzClientID(f *testing.F) {
	me := ids.NewUserID()
	for _, s := range [][3]string{
		{me, me + "/phone", ids.NewUserID()},
		{me, me + "/", me},
		{me, me + "/" + strings.Repeat("d", ids.MaxDeviceID+1), me},
		{me, me + "/a+b", me},
		{me, me + "/a/b", me + "/a"},
		{me, me, ""},
		{me, "phone", ""},
		{"a", "a/b/c", "a/b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, uid, clientID, other string) {
		device, ok := clientDevice(uid, clientID)
		if ok && (uid+"/"+device != clientID || !ids.ValidDeviceID(device)) {
			t.Fatalf("clientDevice(%q, %q) = %q", uid, clientID, device)
		}
		if !ok && device != "" {
			t.Fatalf("clientDevice(%q, %q) refused but returned %q", uid, clientID, device)
		}
		// Anonymous clients may not use ids with '/' (Auth.check), so a
		// user's client id is never open to them.
		if ok && !strings.Contains(clientID, "/") {
			t.Fatalf("client id %q of %q has no '/'", clientID, uid)
		}
		// The client id a device makes from its device id is accepted and
		// gives that device id back.
		if d, ok := clientDevice(uid, uid+"/"+clientID); ok != ids.ValidDeviceID(clientID) || ok && d != clientID {
			t.Fatalf("clientDevice(%q, %q) = %q, %v", uid, uid+"/"+clientID, d, ok)
		}
		// No client id is open to two users: user ids hold no '/'.
		if ok && ids.ValidUserID(uid) && ids.ValidUserID(other) && other != uid {
			if _, both := clientDevice(other, clientID); both {
				t.Fatalf("client id %q accepted for %s and %s", clientID, uid, other)
			}
		}
	})
}

// inboxPayloadOf is what the server publishes on users/{uid}/inbox for m.
func inboxPayloadOf(m store.Message) ([]byte, error) { return json.Marshal(chat.View(m)) }

func FuzzParseDeliveredServerPayload(f *testing.F) {
	a, b := ids.NewUserID(), ids.NewUserID()
	f.Add(chat.DirectChatID(a, b), uint64(1), a, "c1", "text", []byte(`"hi"`), uint64(0), int64(1733000000000))
	f.Add(chat.GroupChatID(a), uint64(1<<64-1), b, "", "system", []byte(`{"op":"created"}`), uint64(3), int64(-1))
	f.Add("g:\"x\\", uint64(7), a, "c", "t", []byte(`[1,{"chat":"g:y","seq":2}]`), uint64(0), int64(0))
	f.Add("d:<a>:b", uint64(0), a, "c", "t", []byte(`null`), uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, chatID string, seq uint64, from, cmid, typ string, body []byte, replyTo uint64, ms int64) {
		m := store.Message{Chat: chatID, Seq: seq, ID: seq ^ replyTo, From: from, CMID: cmid, Type: typ, Body: body,
			ReplyTo: replyTo, SentAt: time.UnixMilli(ms)}
		payload, err := inboxPayloadOf(m)
		if err != nil {
			return // not a JSON body: the server never stores one
		}
		var ref chat.Delivered
		if err := json.Unmarshal(payload, &ref); err != nil {
			t.Fatalf("the server's own payload %q: %v", payload, err)
		}
		got, gotSeq, ok := parseDelivered(payload)
		if ok && (got != ref.Chat || gotSeq != ref.Seq) {
			t.Fatalf("parseDelivered(%q) = %q, %d; encoding/json reads %q, %d", payload, got, gotSeq, ref.Chat, ref.Seq)
		}
		// Every real inbox message is recognised: a miss is a lost receipt.
		if !ok && chat.ValidChatID(chatID) && seq > 0 {
			t.Fatalf("parseDelivered(%q) missed chat %q seq %d", payload, chatID, seq)
		}
		// Every real device message too (a miss leaves it stored and sent
		// again), and no device message passes for an inbox one.
		dpayload, err := json.Marshal(devicemsg.ViewOf(store.DeviceMessage{
			ToUser: from, ToDevice: typ, Seq: seq, From: from, FromDevice: cmid, CMID: cmid, Body: body, SentAt: time.UnixMilli(ms),
		}))
		if err != nil {
			return
		}
		dseq, ok := parseDeviceDelivered(dpayload)
		if seq > 0 && (!ok || dseq != seq) || seq == 0 && ok {
			t.Fatalf("parseDeviceDelivered(%q) = %d, %v; seq %d", dpayload, dseq, ok, seq)
		}
		if _, _, ok := parseDelivered(dpayload); ok {
			t.Fatalf("parseDelivered(%q) took a device message for an inbox one", dpayload)
		}
	})
}
