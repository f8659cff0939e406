package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// One vocabulary: REST and MQTT take the same names and answer the same
// mistake with the same code and field, in messages that name no Go
// internals; the old names keep working.

// fieldError is the part of a REST error answer, an MQTT error event or a
// failed group_op result that this file checks.
type fieldError struct {
	Type       string `json:"type"`
	OK         bool   `json:"ok"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field"`
	ReasonCode byte   `json:"reason_code"`
	Topic      string `json:"topic"`
}

// wantClean fails if a client-facing message names Go types or structs.
func wantClean(t *testing.T, where, msg string) {
	t.Helper()
	if msg == "" {
		t.Fatalf("%s: empty message", where)
	}
	for _, leak := range []string{"struct", "uint64", "Go"} {
		if strings.Contains(msg, leak) {
			t.Fatalf("%s: message %q names Go internals (%q)", where, msg, leak)
		}
	}
}

// restRequest is one REST call; an empty token means none.
type restRequest struct {
	method, path, body string
	token              bool
	idempotencyKey     string
}

// mqttRequest is one publish on users/{me}/{leaf}; the answer is the next
// event of type answer ("error" or "group_op").
type mqttRequest struct {
	leaf    string
	payload string
	answer  string
}

func TestOneVocabulary(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	ab := directChat(alice.ID, bob.ID)
	for i := range 4 {
		h := map[string]string{"Idempotency-Key": fmt.Sprint("setup-", i)}
		if st := s.call(t, "POST", "/v1/chats/"+ab+"/messages", alice.Token, map[string]string{"body": "hi"}, h, nil); st != http.StatusCreated {
			t.Fatalf("setup send %d: %d", i, st)
		}
	}
	// user_ids names the members when creating a group, as when adding.
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "team", "user_ids": []string{bob.ID}}, nil, &g); st != http.StatusCreated || len(g.Members) != 2 {
		t.Fatalf("create a group with user_ids: %d %+v", st, g)
	}
	if st := s.call(t, "POST", "/v1/chats/"+ab+"/messages", alice.Token, map[string]string{"body": "one"}, map[string]string{"Idempotency-Key": "spent"}, nil); st != http.StatusCreated {
		t.Fatalf("send: %d", st)
	}

	// Each finding: the same mistake over REST and over MQTT (nil where
	// the transport has no such request), one expected code and field.
	findings := []struct {
		name   string
		rest   *restRequest
		mqtt   func(ver string) *mqttRequest
		status int
		rc     byte
		code   string
		field  string
	}{
		{
			name: "send without body",
			rest: &restRequest{method: "POST", path: "/v1/chats/" + ab + "/messages", body: `{"type":"text"}`, token: true, idempotencyKey: "nobody"},
			mqtt: func(ver string) *mqttRequest {
				return &mqttRequest{"send", `{"to":"user:` + bob.ID + `","cmid":"nobody-` + ver + `"}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "body",
		},
		{
			name: "empty user_ids",
			rest: &restRequest{method: "POST", path: "/v1/groups/" + g.GroupID + "/members", body: `{"user_ids":[]}`, token: true},
			mqtt: func(ver string) *mqttRequest {
				return &mqttRequest{"groups", `{"op_id":"empty-` + ver + `","op":"add_members","group_id":"` + g.GroupID + `","user_ids":[]}`, "group_op"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "user_ids",
		},
		{
			name: "limit=abc",
			rest: &restRequest{method: "GET", path: "/v1/chats/" + ab + "/messages?limit=abc", token: true},
			mqtt: func(ver string) *mqttRequest {
				return &mqttRequest{"sync", `{"request_id":"limit-` + ver + `","chat":"` + ab + `","limit":"abc"}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "limit",
		},
		{
			name: "changed_since=abc",
			rest: &restRequest{method: "GET", path: "/v1/chats?changed_since=abc", token: true},
			mqtt: func(ver string) *mqttRequest {
				return &mqttRequest{"sync", `{"request_id":"since-` + ver + `","changed_since":"abc"}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "changed_since",
		},
		{
			name:   "seq -1",
			rest:   &restRequest{method: "POST", path: "/v1/chats/" + ab + "/read", body: `{"seq":-1}`, token: true},
			mqtt:   func(string) *mqttRequest { return &mqttRequest{"receipts", `{"chat":"` + ab + `","seq":-1}`, "error"} },
			status: 400, rc: 0x99, code: "invalid_payload", field: "seq",
		},
		{
			name: "read_seq -1",
			rest: &restRequest{method: "POST", path: "/v1/chats/" + ab + "/read", body: `{"read_seq":-1}`, token: true},
			mqtt: func(string) *mqttRequest {
				return &mqttRequest{"receipts", `{"chat":"` + ab + `","read_seq":-1}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "read_seq",
		},
		{
			name: "read_seq as a string",
			rest: &restRequest{method: "POST", path: "/v1/chats/" + ab + "/read", body: `{"read_seq":"2"}`, token: true},
			mqtt: func(string) *mqttRequest {
				return &mqttRequest{"receipts", `{"chat":"` + ab + `","read_seq":"2"}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "read_seq",
		},
		{
			name: "unknown field",
			rest: &restRequest{method: "POST", path: "/v1/chats/" + ab + "/read", body: `{"sequence":1}`, token: true},
			mqtt: func(string) *mqttRequest {
				return &mqttRequest{"receipts", `{"chat":"` + ab + `","sequence":1}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "sequence",
		},
		{
			name: "reply_to -1",
			rest: &restRequest{method: "POST", path: "/v1/chats/" + ab + "/messages", body: `{"body":"x","reply_to":-1}`, token: true, idempotencyKey: "neg"},
			mqtt: func(ver string) *mqttRequest {
				return &mqttRequest{"send", `{"to":"user:` + bob.ID + `","cmid":"neg-` + ver + `","body":"x","reply_to":-1}`, "error"}
			},
			status: 400, rc: 0x99, code: "invalid_payload", field: "reply_to",
		},
		{
			name: "history of chat nonsense",
			rest: &restRequest{method: "GET", path: "/v1/chats/nonsense/messages", token: true},
			mqtt: func(ver string) *mqttRequest {
				return &mqttRequest{"sync", `{"request_id":"nonsense-` + ver + `","chat":"nonsense"}`, "error"}
			},
			status: 404, rc: 0x87, code: "not_found", field: "chat",
		},
		{
			name: "read marker in chat nonsense",
			rest: &restRequest{method: "POST", path: "/v1/chats/nonsense/read", body: `{"read_seq":1}`, token: true},
			mqtt: func(string) *mqttRequest {
				return &mqttRequest{"receipts", `{"chat":"nonsense","read_seq":1}`, "error"}
			},
			status: 404, rc: 0x87, code: "not_found", field: "chat",
		},
		{
			name:   "send to chat nonsense",
			rest:   &restRequest{method: "POST", path: "/v1/chats/nonsense/messages", body: `{"body":"x"}`, token: true, idempotencyKey: "nonsense"},
			status: 404, code: "not_found", field: "chat",
		},
		{
			name: "cmid reused with another body",
			rest: &restRequest{method: "POST", path: "/v1/chats/" + ab + "/messages", body: `{"body":"two"}`, token: true, idempotencyKey: "spent"},
			mqtt: func(string) *mqttRequest {
				return &mqttRequest{"send", `{"to":"user:` + bob.ID + `","cmid":"spent","body":"two"}`, "error"}
			},
			status: 409, rc: 0x83, code: "cmid_reused",
		},
		{
			name:   "login without password",
			rest:   &restRequest{method: "POST", path: "/v1/auth/login", body: `{"username":"alice"}`},
			status: 401, code: "unauthenticated",
		},
		{
			name:   "login with a wrong password",
			rest:   &restRequest{method: "POST", path: "/v1/auth/login", body: `{"username":"alice","password":"not it at all"}`},
			status: 401, code: "unauthenticated",
		},
		{
			name:   "refresh without a token",
			rest:   &restRequest{method: "POST", path: "/v1/auth/refresh", body: `{}`},
			status: 401, code: "unauthenticated", field: "refresh_token",
		},
		{
			name:   "refresh with a bad token",
			rest:   &restRequest{method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"nope"}`},
			status: 401, code: "unauthenticated",
		},
		{
			name:   "no bearer token",
			rest:   &restRequest{method: "GET", path: "/v1/chats"},
			status: 401, code: "unauthenticated", field: "Authorization",
		},
		{
			name:   "refresh body not JSON",
			rest:   &restRequest{method: "POST", path: "/v1/auth/refresh", body: `refresh`},
			status: 400, code: "invalid_payload",
		},
	}

	t.Run("REST", func(t *testing.T) {
		for _, f := range findings {
			t.Run(f.name, func(t *testing.T) {
				h := map[string]string{}
				if f.rest.token {
					h["Authorization"] = "Bearer " + alice.Token
				}
				if f.rest.idempotencyKey != "" {
					h["Idempotency-Key"] = f.rest.idempotencyKey
				}
				r := rawHTTP(t, s, f.rest.method, f.rest.path, h, f.rest.body)
				var e struct{ Error fieldError }
				if err := json.Unmarshal(r.body, &e); err != nil {
					t.Fatalf("%d %q is no error answer: %v", r.status, r.body, err)
				}
				if r.status != f.status || e.Error.Code != f.code || e.Error.Field != f.field {
					t.Fatalf("%d %s, want %d %s field %q", r.status, r.body, f.status, f.code, f.field)
				}
				wantClean(t, f.name, e.Error.Message)
			})
		}
	})

	for _, ver := range versions {
		t.Run("MQTT "+ver, func(t *testing.T) {
			d := dialDevice(t, s, ver, alice, "vocab-"+ver)
			for _, f := range findings {
				if f.mqtt == nil {
					continue
				}
				req := f.mqtt(ver)
				t.Run(f.name, func(t *testing.T) {
					d.wantRC(t, d.pub(t, "users/"+alice.ID+"/"+req.leaf, []byte(req.payload)), f.rc)
					r := d.next(t, req.answer+" event", func(r received) bool {
						var e fieldError
						return r.Topic == "users/"+alice.ID+"/events" && json.Unmarshal(r.Payload, &e) == nil && e.Type == req.answer
					})
					var e fieldError
					if err := json.Unmarshal(r.Payload, &e); err != nil {
						t.Fatal(err)
					}
					if e.OK || e.Code != f.code || e.Field != f.field || e.ReasonCode != f.rc {
						t.Fatalf("event %s, want %s field %q reason 0x%02x", r.Payload, f.code, f.field, f.rc)
					}
					wantClean(t, f.name, e.Message)
				})
			}
		})
	}

	t.Run("old names", func(t *testing.T) {
		readSeq := func(a account) uint64 {
			t.Helper()
			for _, ch := range s.allChats(t, a, url.Values{}).Chats {
				if ch.Chat == ab {
					return ch.ReadSeq
				}
			}
			t.Fatalf("%s has no chat %s", a.Username, ab)
			return 0
		}
		// REST: read_seq, and seq as its alias; both at once must agree.
		for _, tc := range []struct {
			body   string
			status int
			want   uint64
		}{
			{`{"seq":1}`, 200, 1},
			{`{"read_seq":2}`, 200, 2},
			{`{"read_seq":3,"seq":3}`, 200, 3},
			{`{"read_seq":4,"seq":2}`, 400, 3},
		} {
			r := rawHTTP(t, s, "POST", "/v1/chats/"+ab+"/read", bearer(bob.Token), tc.body)
			if r.status != tc.status {
				t.Fatalf("read %s: %d %s, want %d", tc.body, r.status, r.body, tc.status)
			}
			if got := readSeq(bob); got != tc.want {
				t.Fatalf("after read %s: read_seq %d, want %d", tc.body, got, tc.want)
			}
		}
		// REST: members is the old name of user_ids when creating a group.
		var old groupView
		if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "old", "members": []string{bob.ID}}, nil, &old); st != http.StatusCreated || len(old.Members) != 2 {
			t.Fatalf("create a group with members: %d %+v", st, old)
		}
		r := rawHTTP(t, s, "POST", "/v1/groups", bearer(alice.Token), `{"name":"both","user_ids":[],"members":[]}`)
		r.wantAPIError(t, http.StatusBadRequest, "invalid_payload")

		// MQTT: receipts take seq as well as read_seq (bob has read 3 of
		// the 5 messages).
		for _, ver := range versions {
			d := dialDevice(t, s, ver, bob, "old-"+ver)
			want := readSeq(bob) + 1
			d.wantRC(t, d.request(t, "receipts", map[string]any{"chat": ab, "seq": want}), 0)
			eventually(t, "bob's read_seq moved by seq over "+ver, func() error {
				if got := readSeq(bob); got != want {
					return fmt.Errorf("read_seq %d, want %d", got, want)
				}
				return nil
			})
		}
	})
}

// TestForwardedRefusalNamesField: a send refused by the chat's owner node
// in a cluster names its field as one refused locally does.
func TestForwardedRefusalNamesField(t *testing.T) {
	c := startCluster(t, 2)
	s := c.server(0)
	alice := s.register(t, "alice")
	bob := c.peerOwnedBy(t, 0, 1, "bob", alice) // the chat lives on node 1
	h := bearer(alice.Token)
	h["Idempotency-Key"] = "far-reply"
	r := rawHTTP(t, s, "POST", "/v1/chats/"+directChat(alice.ID, bob.ID)+"/messages", h, `{"body":"x","reply_to":99}`)
	e := r.wantAPIError(t, http.StatusBadRequest, "invalid_payload")
	var full struct{ Error fieldError }
	if err := json.Unmarshal(r.body, &full); err != nil || full.Error.Field != "reply_to" {
		t.Fatalf("forwarded refusal %s: field %q, want reply_to (%v)", r.body, full.Error.Field, err)
	}
	wantClean(t, "forwarded refusal", e.Error.Message)
}
