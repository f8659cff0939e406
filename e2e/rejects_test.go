package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
)

// TestBadSendsAreRefusedAndLoseNothing: oversized and malformed sends get
// their reason code (v5) and an error event (every version); the connection
// stays usable and valid sends around them are stored in order.
func TestBadSendsAreRefusedAndLoseNothing(t *testing.T) {
	const limit = 2048
	s := startServer(t, func(c *config.Config) { c.Limits.MaxMessageBytes = limit })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	a5 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "v5")
	a5.subscribe(t, "users/"+alice.ID+"/events")
	a3 := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "v3")
	bobDev := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobDev.subscribe(t, "users/"+bob.ID+"/inbox")

	onError := onEvent(alice.ID, "error")
	raw := func(v map[string]any) []byte { b, _ := json.Marshal(v); return b }
	tests := []struct {
		name    string
		payload []byte
		reason  byte
		code    string
		cmid    string
	}{
		{"not json", []byte("hello"), 0x99, "invalid_payload", ""},
		{"truncated json", []byte(`{"to":"user:` + bob.ID), 0x99, "invalid_payload", ""},
		{"unknown field", raw(map[string]any{"to": "user:" + bob.ID, "cmid": "u1", "body": "x", "colour": "red"}), 0x99, "invalid_payload", "u1"},
		{"missing cmid", raw(map[string]any{"to": "user:" + bob.ID, "body": "x"}), 0x99, "invalid_payload", ""},
		{"cmid too long", raw(map[string]any{"to": "user:" + bob.ID, "cmid": strings.Repeat("c", 65), "body": "x"}), 0x99, "invalid_payload", ""},
		{"missing body", raw(map[string]any{"to": "user:" + bob.ID, "cmid": "nb"}), 0x99, "invalid_payload", "nb"},
		{"bad target", raw(map[string]any{"to": bob.ID, "cmid": "bt", "body": "x"}), 0x99, "invalid_payload", "bt"},
		{"system type", raw(map[string]any{"to": "user:" + bob.ID, "cmid": "st", "type": "system", "body": "x"}), 0x99, "invalid_payload", "st"},
		{"unknown user", raw(map[string]any{"to": "user:aaaaaaaaaaaaaaaaaaaa", "cmid": "uu", "body": "x"}), 0x87, "unknown_recipient", "uu"},
		{"malformed user id", raw(map[string]any{"to": "user:../bob", "cmid": "mu", "body": "x"}), 0x87, "unknown_recipient", "mu"},
		{"oversized", raw(map[string]any{"to": "user:" + bob.ID, "cmid": "big", "body": strings.Repeat("x", limit)}), 0x95, "payload_too_large", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := a5.publish(t, "users/"+alice.ID+"/send", tc.payload)
			if rc != tc.reason || err == nil {
				t.Fatalf("v5 PUBACK = 0x%02x (%v), want 0x%02x", rc, err, tc.reason)
			}
			ev := a5.box.next(t, "error event", onError).event(t)
			if ev.Type != "error" || ev.Code != tc.code || ev.ReasonCode != tc.reason || ev.Message == "" || ev.CMID != tc.cmid {
				t.Fatalf("error event %+v, want code %s cmid %q", ev, tc.code, tc.cmid)
			}
			a3.publish(t, "users/"+alice.ID+"/send", tc.payload)
			ev = a5.box.next(t, "error event for 3.1.1", onError).event(t)
			if ev.Code != tc.code {
				t.Fatalf("3.1.1 error event %+v, want %s", ev, tc.code)
			}
			// Both connections still work: a valid send right after is stored
			// and delivered with the next seq.
			cmid := fmt.Sprintf("ok-%d", i)
			a5.send(t, bob.ID, cmid, "fine")
			m := bobDev.box.next(t, "bob inbox", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
			if m.CMID != cmid || m.Seq != uint64(i+1) {
				t.Fatalf("bob got %s seq %d, want %s seq %d", m.CMID, m.Seq, cmid, i+1)
			}
		})
	}
	if !a3.c.IsConnectionOpen() {
		t.Fatal("3.1.1 connection dropped")
	}
	page := s.history(t, alice, directChat(alice.ID, bob.ID), "?limit=200")
	if len(page.Messages) != len(tests) {
		t.Fatalf("history holds %d messages, want %d (only the valid sends)", len(page.Messages), len(tests))
	}
}
