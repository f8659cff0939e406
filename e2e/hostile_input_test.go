package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestHostileStringsAreRefusedNotFailed: strings no valid request contains
// (a NUL, invalid UTF-8, a chat id naming no user or group) are refused
// with a 4xx or an MQTT reason code and an error event, before they reach
// the store. PostgreSQL text cannot hold NUL or invalid UTF-8, so any such
// string that got through would fail the whole request with an internal
// error instead (this test runs on PostgreSQL too, see onPostgres); the
// fuzz targets found them.
func TestHostileStringsAreRefusedNotFailed(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	var g struct {
		GroupID string `json:"group_id"`
	}
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "trip", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: status %d", st)
	}
	direct := directChat(alice.ID, bob.ID)
	// A chat id with alice in it but no user as the other member: it sorts
	// after alice's id, so it is shaped like a 1:1 chat of hers.
	fakeDirect := "d:" + alice.ID + ":z%00"

	rest := []struct {
		name, method, path, body string
		idem                     string
		status                   int
		code                     string
	}{
		{"send type with NUL", "POST", "/v1/chats/" + direct + "/messages", `{"type":"a\u0000b","body":"x"}`, "t-nul", 400, "invalid_payload"},
		{"send type with a control character", "POST", "/v1/chats/" + direct + "/messages", `{"type":"a\u0085b","body":"x"}`, "t-c1", 400, "invalid_payload"},
		{"send body not UTF-8", "POST", "/v1/chats/" + direct + "/messages", "{\"body\":\"\xff\"}", "b-ff", 400, "invalid_payload"},
		{"send to a group id with NUL", "POST", "/v1/chats/g:%00/messages", `{"body":"x"}`, "g-nul", 404, "not_found"},
		{"send to a group id with invalid UTF-8", "POST", "/v1/chats/g:%FF/messages", `{"body":"x"}`, "g-ff", 404, "not_found"},
		{"history of a chat id with NUL", "GET", "/v1/chats/" + fakeDirect + "/messages", "", "", 404, "not_found"},
		{"history of a group id with invalid UTF-8", "GET", "/v1/chats/g:%FF/messages", "", "", 404, "not_found"},
		{"read marker in a chat id with NUL", "POST", "/v1/chats/" + fakeDirect + "/read", `{"seq":1}`, "", 404, "not_found"},
		{"group name with NUL", "POST", "/v1/groups", `{"name":"a\u0000b"}`, "", 400, "invalid_payload"},
		{"group rename with a control character", "PATCH", "/v1/groups/" + g.GroupID, `{"name":"a\u001bb"}`, "", 400, "invalid_payload"},
		{"groups page after NUL", "GET", "/v1/groups?after=%00", "", "", 400, "invalid_payload"},
		{"groups page after invalid UTF-8", "GET", "/v1/groups?after=%FF", "", "", 400, "invalid_payload"},
		{"push token with NUL", "PUT", "/v1/devices/phone", `{"platform":"android","push_token":"a\u0000b"}`, "", 400, "invalid_payload"},
		{"delete device id with NUL", "DELETE", "/v1/devices/%00", "", "", 404, "not_found"},
		{"delete device id with invalid UTF-8", "DELETE", "/v1/devices/%FF", "", "", 404, "not_found"},
		{"presence of a user id with NUL", "GET", "/v1/presence/%00", "", "", 403, "not_authorized"},
		{"body with a second JSON value", "POST", "/v1/chats/" + direct + "/read", `{"seq":1} {"seq":2}`, "", 400, "invalid_payload"},
	}
	for _, tc := range rest {
		t.Run("REST/"+tc.name, func(t *testing.T) {
			h := bearer(alice.Token)
			if tc.idem != "" {
				h["Idempotency-Key"] = tc.idem
			}
			rawHTTP(t, s, tc.method, tc.path, h, tc.body).wantAPIError(t, tc.status, tc.code)
		})
	}
	t.Run("REST/presence list leaves out ids with NUL", func(t *testing.T) {
		r := rawHTTP(t, s, "GET", "/v1/presence?ids=%00,"+bob.ID, bearer(alice.Token), "")
		var out struct {
			Presence []struct {
				UserID string `json:"user_id"`
			} `json:"presence"`
		}
		if err := json.Unmarshal(r.body, &out); r.status != http.StatusOK || err != nil {
			t.Fatalf("status %d, body %s (%v)", r.status, r.body, err)
		}
		if len(out.Presence) != 1 || out.Presence[0].UserID != bob.ID {
			t.Fatalf("presence %+v, want only bob", out.Presence)
		}
	})

	a5 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "v5")
	a5.subscribe(t, "users/"+alice.ID+"/events")
	enc := func(v map[string]any) []byte { b, _ := json.Marshal(v); return b }
	nulDirect := "d:" + alice.ID + ":z\x00"
	mqtt := []struct {
		name, leaf string
		payload    []byte
		reason     byte
		code       string
	}{
		{"send type with NUL", "send", enc(map[string]any{"to": "user:" + bob.ID, "cmid": "m1", "type": "a\x00", "body": "x"}), 0x99, "invalid_payload"},
		{"send to a group id with NUL", "send", enc(map[string]any{"to": "group:\x00", "cmid": "m2", "body": "x"}), 0x87, "not_authorized"},
		{"send body not UTF-8", "send", []byte("{\"to\":\"user:" + bob.ID + "\",\"cmid\":\"m3\",\"body\":\"\xff\"}"), 0x99, "invalid_payload"},
		{"typing in a chat id with NUL", "typing", enc(map[string]any{"chat": nulDirect}), 0x87, "not_found"},
		{"read receipt in a group id with NUL", "receipts", enc(map[string]any{"chat": "g:\x00", "read_seq": 1}), 0x87, "not_found"},
		{"history of a chat id with NUL", "sync", enc(map[string]any{"chat": nulDirect}), 0x87, "not_found"},
	}
	for _, tc := range mqtt {
		t.Run("MQTT/"+tc.name, func(t *testing.T) {
			rc, err := a5.publish(t, "users/"+alice.ID+"/"+tc.leaf, tc.payload)
			if rc != tc.reason || err == nil {
				t.Fatalf("PUBACK 0x%02x (%v), want 0x%02x", rc, err, tc.reason)
			}
			ev := a5.box.next(t, "error event", onEvent(alice.ID, "error")).event(t)
			if ev.Type != "error" || ev.Code != tc.code || ev.ReasonCode != tc.reason || ev.Message == "" {
				t.Fatalf("error event %+v, want code %s", ev, tc.code)
			}
		})
	}
	t.Run("MQTT/group op with a name with NUL", func(t *testing.T) {
		rc, err := a5.publish(t, "users/"+alice.ID+"/groups", enc(map[string]any{"op_id": "op1", "op": "create", "name": "a\x00b"}))
		if rc != 0x99 || err == nil {
			t.Fatalf("PUBACK 0x%02x (%v), want 0x99", rc, err)
		}
		ev := a5.box.next(t, "group_op event", onTopic("users/"+alice.ID+"/events"))
		var res struct {
			Type string `json:"type"`
			OK   bool   `json:"ok"`
			Code string `json:"code"`
		}
		if err := json.Unmarshal(ev.Payload, &res); err != nil || res.Type != "group_op" || res.OK || res.Code != "invalid_payload" {
			t.Fatalf("group_op event %s (%v), want a refusal with invalid_payload", ev.Payload, err)
		}
	})

	// Nothing above was stored, and the chat still works.
	a5.send(t, bob.ID, "after", "still fine")
	if page := s.history(t, alice, direct, ""); len(page.Messages) != 1 || page.Messages[0].CMID != "after" {
		t.Fatalf("history %+v, want only the valid send", page.Messages)
	}
}
