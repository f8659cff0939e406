package groups

import (
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func TestSuccessor(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := func(uid string, r store.Role, minutes int) store.Member {
		return store.Member{UserID: uid, Role: r, JoinedAt: t0.Add(time.Duration(minutes) * time.Minute)}
	}
	tests := []struct {
		name    string
		members []store.Member
		want    string
	}{
		{"oldest admin beats older members", []store.Member{m("own", store.RoleOwner, 0), m("a", store.RoleMember, 1), m("b", store.RoleAdmin, 5), m("c", store.RoleAdmin, 3)}, "c"},
		{"no admin: oldest member", []store.Member{m("own", store.RoleOwner, 0), m("x", store.RoleMember, 4), m("y", store.RoleMember, 2)}, "y"},
		{"ties broken by user id", []store.Member{m("z", store.RoleMember, 1), m("own", store.RoleOwner, 0), m("k", store.RoleMember, 1)}, "k"},
		{"one other", []store.Member{m("own", store.RoleOwner, 0), m("only", store.RoleMember, 9)}, "only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := successor(tc.members, "own"); got.UserID != tc.want {
				t.Fatalf("successor = %q, want %q", got.UserID, tc.want)
			}
		})
	}
}
