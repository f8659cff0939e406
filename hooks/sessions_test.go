package hooks

import (
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// A CONNECT whose session was read just before a revocation reaches track
// just after it: it must be refused, not tracked and left open.
func TestSessionsRefuseConnectRacingRevocation(t *testing.T) {
	h := NewSessions(SessionOptions{})
	later := time.Now().Add(time.Hour)
	kept := &mqtt.Client{ID: "u1/laptop"}
	if !h.track(kept, Identity{UserID: "u1", SessionID: "keep", ExpiresAt: later}) {
		t.Fatal("track refused a live session")
	}
	h.CloseSessions("u1", []string{"gone"})
	cases := []struct {
		name string
		id   Identity
		want bool
	}{
		{"revoked session", Identity{UserID: "u1", SessionID: "gone", ExpiresAt: later}, false},
		{"another session of the user", Identity{UserID: "u1", SessionID: "keep", ExpiresAt: later}, true},
		{"another user's session", Identity{UserID: "u2", SessionID: "other", ExpiresAt: later}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.track(&mqtt.Client{ID: tc.id.UserID + "/phone"}, tc.id); got != tc.want {
				t.Fatalf("track = %v, want %v", got, tc.want)
			}
		})
	}
	h.mu.Lock()
	n := len(h.users["u1"])
	h.mu.Unlock()
	if n != 2 {
		t.Fatalf("u1 has %d tracked connections, want 2", n)
	}
	if !h.untrack("u1", kept) || h.untrack("u1", kept) {
		t.Fatal("untrack must report a tracked connection once")
	}
}
