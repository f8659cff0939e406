package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// TestCleanInputRefused: sends whose body is not UTF-8, whose type passes
// for "system" in another case, whose reply_to names no message of the
// chat, or whose cmid (REST: Idempotency-Key) already names different
// content are refused with a clear code over MQTT 5 (reason code and error
// event), MQTT 3.1.1 (error event) and REST (status and code), and store
// nothing. A true retry and a reply to an existing message still pass.
func TestCleanInputRefused(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	events := "users/" + alice.ID + "/events"
	sendPath := "/v1/chats/" + chat + "/messages"

	type sent struct {
		Chat string `json:"chat"`
		Seq  uint64 `json:"seq"`
	}
	var first sent
	for i, body := range []string{"one", "two"} {
		var out sent
		key := []string{"c1", "c2"}[i]
		if st := s.call(t, "POST", sendPath, alice.Token, map[string]any{"body": body}, map[string]string{"Idempotency-Key": key}, &out); st != http.StatusCreated {
			t.Fatalf("send %s: %d", key, st)
		}
		if i == 0 {
			first = out
		}
	}

	a5 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a5.subscribe(t, events)
	a3 := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "old-phone")
	a3.subscribe(t, events)

	// Each case as an MQTT envelope (raw bytes, so invalid UTF-8 reaches
	// the server as it is) and as a REST body.
	to := `"to":"user:` + bob.ID + `"`
	cases := []struct {
		name       string
		cmid       string // "" = one of the case's own per transport
		fields     string // JSON members after to and cmid
		code       string
		reason     byte
		httpStatus int
	}{
		{"body not UTF-8", "", `"body":"` + "\xff\xfe\xc0\xaf" + `"`, "invalid_payload", 0x99, http.StatusBadRequest},
		{"body with a lone surrogate escape", "", `"body":"\ud800 half a pair"`, "invalid_payload", 0x99, http.StatusBadRequest},
		{"type System", "", `"type":"System","body":"x"`, "invalid_payload", 0x99, http.StatusBadRequest},
		{"type SYSTEM", "", `"type":"SYSTEM","body":"x"`, "invalid_payload", 0x99, http.StatusBadRequest},
		{"reply_to past the chat's last message", "", `"body":"re","reply_to":999`, "invalid_payload", 0x99, http.StatusBadRequest},
		{"reply_to one past the last message", "", `"body":"re","reply_to":3`, "invalid_payload", 0x99, http.StatusBadRequest},
		{"cmid reused with another body", "c1", `"body":"not one"`, "cmid_reused", 0x83, http.StatusConflict},
		{"cmid reused with another type", "c1", `"type":"note","body":"one"`, "cmid_reused", 0x83, http.StatusConflict},
		{"cmid reused with a reply_to", "c1", `"body":"one","reply_to":1`, "cmid_reused", 0x83, http.StatusConflict},
	}
	onError := func(cmid string) func(received) bool {
		return func(r received) bool {
			var e event
			return r.Topic == events && json.Unmarshal(r.Payload, &e) == nil && e.Type == "error" && e.CMID == cmid
		}
	}
	for i, tc := range cases {
		cmid := func(transport string) string {
			if tc.cmid != "" {
				return tc.cmid
			}
			return fmt.Sprintf("%s-%d", transport, i)
		}
		t.Run("MQTT5/"+tc.name, func(t *testing.T) {
			id := cmid("v5")
			payload := []byte(`{` + to + `,"cmid":"` + id + `",` + tc.fields + `}`)
			rc, err := a5.publish(t, "users/"+alice.ID+"/send", payload)
			if rc != tc.reason || err == nil {
				t.Fatalf("PUBACK 0x%02x (%v), want 0x%02x", rc, err, tc.reason)
			}
			ev := a5.box.next(t, "error event", onError(id)).event(t)
			if ev.Code != tc.code || ev.ReasonCode != tc.reason || ev.Message == "" {
				t.Fatalf("error event %+v, want code %s", ev, tc.code)
			}
		})
		t.Run("MQTT3/"+tc.name, func(t *testing.T) {
			id := cmid("v3")
			a3.publish(t, "users/"+alice.ID+"/send", []byte(`{`+to+`,"cmid":"`+id+`",`+tc.fields+`}`))
			ev := a3.box.next(t, "error event", onError(id)).event(t)
			if ev.Code != tc.code || ev.Message == "" {
				t.Fatalf("error event %+v, want code %s", ev, tc.code)
			}
		})
		t.Run("REST/"+tc.name, func(t *testing.T) {
			res := rawHTTP(t, s, "POST", sendPath, map[string]string{
				"Authorization": "Bearer " + alice.Token, "Idempotency-Key": cmid("rest"),
			}, `{`+tc.fields+`}`)
			var body struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(res.body, &body); err != nil || res.status != tc.httpStatus || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Fatalf("status %d body %s (%v), want %d %s", res.status, res.body, err, tc.httpStatus, tc.code)
			}
		})
	}

	if page := s.history(t, alice, chat, ""); len(page.Messages) != 2 {
		t.Fatalf("after refused sends the chat holds %d messages, want the 2 sent first", len(page.Messages))
	}

	// What is legitimate still passes: an exact retry (with the body
	// re-encoded) is answered with the original, a reply to an existing
	// message is stored.
	var again sent
	res := rawHTTP(t, s, "POST", sendPath, map[string]string{"Authorization": "Bearer " + alice.Token, "Idempotency-Key": "c1"}, `{ "body" : "one" }`)
	if res.status != http.StatusCreated || res.header.Get("Idempotent-Replayed") != "true" || json.Unmarshal(res.body, &again) != nil || again != first {
		t.Fatalf("exact retry: %d %s replayed=%q, want 201 with %+v", res.status, res.body, res.header.Get("Idempotent-Replayed"), first)
	}
	rc, err := a5.publish(t, "users/"+alice.ID+"/send", []byte(`{`+to+`,"cmid":"c1","type":"text","body":"one"}`))
	if rc != 0 || err != nil {
		t.Fatalf("exact retry over MQTT: PUBACK 0x%02x (%v), want success", rc, err)
	}
	var reply sent
	if st := s.call(t, "POST", sendPath, alice.Token, map[string]any{"body": "re", "reply_to": 2}, map[string]string{"Idempotency-Key": "c3"}, &reply); st != http.StatusCreated || reply.Seq != 3 {
		t.Fatalf("reply to seq 2: %d %+v, want 201 seq 3", st, reply)
	}
	a5.send(t, bob.ID, "c4", "plain") // a plain "text" send after all of it
	page := s.history(t, alice, chat, "")
	if n := len(page.Messages); n != 4 || page.Messages[2].Type != "text" {
		t.Fatalf("chat holds %d messages %+v, want 4", n, page.Messages)
	}
}
