package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestPresenceVisibilityFollowsMembership: whichever path changes a
// membership (REST, MQTT group operations, a first 1:1 message), the next
// presence question sees it. A user refused before being added may
// subscribe right after; a user removed stops receiving the other's
// presence at once, on the subscription it already has, and is refused
// over REST and on a new subscription.
func TestPresenceVisibilityFollowsMembership(t *testing.T) {
	type env struct {
		s                  *server
		alice, dave, carol account
		ops                *device // alice's requests over MQTT
		daveOps            *device
	}
	restCreate := func(t *testing.T, e env, members ...string) string {
		t.Helper()
		var g groupView
		if st := e.s.call(t, "POST", "/v1/groups", e.alice.Token, map[string]any{"name": "g", "members": members}, nil, &g); st != http.StatusCreated {
			t.Fatalf("create group: %d", st)
		}
		return g.GroupID
	}
	mqttOp := func(t *testing.T, d *device, req map[string]any) string {
		t.Helper()
		d.request(t, "groups", req)
		ev := d.event(t, "group_op")
		if !ev.OK || ev.OpID != req["op_id"] {
			t.Fatalf("%v: %+v", req, ev)
		}
		return ev.GroupID
	}
	restStatus := func(t *testing.T, e env, method, path, token string, body any, want int) {
		t.Helper()
		if st := e.s.call(t, method, path, token, body, nil, nil); st != want {
			t.Fatalf("%s %s = %d, want %d", method, path, st, want)
		}
	}
	tests := []struct {
		name string
		// grant makes dave related to alice, returning the group (if any).
		grant func(t *testing.T, e env) string
		// revoke ends it; nil when nothing can (a 1:1 chat with messages).
		revoke func(t *testing.T, e env, gid string)
	}{
		{"REST create, REST remove",
			func(t *testing.T, e env) string { return restCreate(t, e, e.dave.ID) },
			func(t *testing.T, e env, gid string) {
				restStatus(t, e, "DELETE", "/v1/groups/"+gid+"/members/"+e.dave.ID, e.alice.Token, nil, http.StatusNoContent)
			}},
		{"MQTT create, MQTT remove",
			func(t *testing.T, e env) string {
				return mqttOp(t, e.ops, map[string]any{"op_id": "c", "op": "create", "name": "g", "user_ids": []string{e.dave.ID}})
			},
			func(t *testing.T, e env, gid string) {
				mqttOp(t, e.ops, map[string]any{"op_id": "r", "op": "remove_member", "group_id": gid, "user_id": e.dave.ID})
			}},
		{"REST add, leave over REST",
			func(t *testing.T, e env) string {
				gid := restCreate(t, e, e.carol.ID)
				restStatus(t, e, "POST", "/v1/groups/"+gid+"/members", e.alice.Token, map[string]any{"user_ids": []string{e.dave.ID}}, http.StatusOK)
				return gid
			},
			func(t *testing.T, e env, gid string) {
				restStatus(t, e, "DELETE", "/v1/groups/"+gid+"/members/"+e.dave.ID, e.dave.Token, nil, http.StatusNoContent)
			}},
		{"MQTT add, leave over MQTT",
			func(t *testing.T, e env) string {
				gid := restCreate(t, e, e.carol.ID)
				mqttOp(t, e.ops, map[string]any{"op_id": "a", "op": "add_members", "group_id": gid, "user_ids": []string{e.dave.ID}})
				return gid
			},
			func(t *testing.T, e env, gid string) {
				mqttOp(t, e.daveOps, map[string]any{"op_id": "l", "op": "remove_member", "group_id": gid, "user_id": e.dave.ID})
			}},
		{"REST create, REST delete",
			func(t *testing.T, e env) string { return restCreate(t, e, e.dave.ID, e.carol.ID) },
			func(t *testing.T, e env, gid string) {
				restStatus(t, e, "DELETE", "/v1/groups/"+gid, e.alice.Token, nil, http.StatusNoContent)
			}},
		{"MQTT create, MQTT delete",
			func(t *testing.T, e env) string {
				return mqttOp(t, e.ops, map[string]any{"op_id": "c", "op": "create", "name": "g", "user_ids": []string{e.dave.ID}})
			},
			func(t *testing.T, e env, gid string) {
				mqttOp(t, e.ops, map[string]any{"op_id": "d", "op": "delete", "group_id": gid})
			}},
		{"first 1:1 message", func(t *testing.T, e env) string { befriend(t, e.s, e.dave, e.alice); return "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, presenceConfig(time.Minute))
			e := env{s: s, alice: s.register(t, "alice"), dave: s.register(t, "dave"), carol: s.register(t, "carol")}
			e.ops = dialDevice(t, s, "v5", e.alice, "ops") // alice's one device until the end
			e.daveOps = dialDevice(t, s, "v5", e.dave, "ops")
			befriend(t, s, e.alice, e.carol) // carol watches alice throughout: the marker
			marker := connectDevice(t, s, 5, e.carol, "watch", 30)
			if rc := marker.subscribe("presence/" + e.alice.ID); rc != 1 {
				t.Fatalf("carol's SUBACK = 0x%02x", rc)
			}
			presencePath := "/v1/presence/" + e.alice.ID

			// Refused first, so a "no" is remembered; then granted.
			stranger := connectDevice(t, s, 5, e.dave, "early", 30)
			if rc := stranger.subscribe("presence/" + e.alice.ID); rc != refused(5) {
				t.Fatalf("dave's SUBACK before = 0x%02x, want refused", rc)
			}
			restStatus(t, e, "GET", presencePath, e.dave.Token, nil, http.StatusForbidden)
			gid := tt.grant(t, e)
			restStatus(t, e, "GET", presencePath, e.dave.Token, nil, http.StatusOK)
			watch := connectDevice(t, s, 5, e.dave, "watch", 30)
			if rc := watch.subscribe("presence/" + e.alice.ID); rc != 1 {
				t.Fatalf("dave's SUBACK after the grant = 0x%02x, want 1", rc)
			}
			waitPresence(t, watch.box, e.alice.ID, "online", 1)
			watch.subscribe("users/" + e.dave.ID + "/inbox")
			if tt.revoke == nil {
				return
			}

			tt.revoke(t, e, gid)
			restStatus(t, e, "GET", presencePath, e.dave.Token, nil, http.StatusForbidden)
			if rc := connectDevice(t, s, 5, e.dave, "late", 30).subscribe("presence/" + e.alice.ID); rc != refused(5) {
				t.Fatalf("dave's new SUBACK after the revoke = 0x%02x, want refused", rc)
			}
			// alice changes twice; once carol saw the second change, the
			// first was delivered to (or withheld from) every subscriber,
			// and a message carol then sends dave travels behind it on
			// dave's connection.
			connectDevice(t, s, 5, e.alice, "laptop", 30)
			waitPresence(t, marker.box, e.alice.ID, "online", 2)
			connectDevice(t, s, 5, e.alice, "tablet", 30)
			waitPresence(t, marker.box, e.alice.ID, "online", 3)
			if st := s.call(t, "POST", "/v1/chats/"+directChat(e.carol.ID, e.dave.ID)+"/messages", e.carol.Token,
				map[string]any{"body": "marker"}, map[string]string{"Idempotency-Key": "marker"}, nil); st != http.StatusCreated {
				t.Fatalf("marker: %d", st)
			}
			for {
				r := watch.box.next(t, "the marker", nil)
				if r.Topic == "users/"+e.dave.ID+"/inbox" {
					break
				}
				if r.Topic == "presence/"+e.alice.ID {
					t.Fatalf("dave got alice's presence %s after leaving the group", r.Payload)
				}
			}
		})
	}
}
