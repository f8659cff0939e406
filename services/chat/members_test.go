package chat

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

func TestMembers(t *testing.T) {
	f := newFixture(t, Options{})
	a, b, c := f.user(), f.user(), f.user()
	ctx := context.Background()
	gid := ids.NewUserID()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := f.st.CreateGroup(ctx, store.Group{ID: gid, Name: "g", CreatedBy: a, CreatedAt: now}, []store.Member{
		{GroupID: gid, UserID: a, Role: store.RoleOwner, JoinedAt: now},
		{GroupID: gid, UserID: c, Role: store.RoleMember, JoinedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	tests := []struct {
		chat string
		want []string
		code Code
	}{
		{DirectChatID(a, b), sorted(a, b), ""},
		{DirectChatID(a, a), []string{a}, ""},
		{GroupChatID(gid), sorted(a, c), ""},
		{GroupChatID(ids.NewUserID()), []string{}, ""}, // unknown group: nobody
		{"x:" + a, nil, CodeNotFound},
		{"d:" + max(a, b) + ":" + min(a, b), nil, CodeNotFound}, // not the canonical order
	}
	for _, tc := range tests {
		got, err := f.svc.Members(ctx, tc.chat)
		if tc.code != "" {
			if CodeOf(err) != tc.code {
				t.Errorf("Members(%s) error %v, want %s", tc.chat, err, tc.code)
			}
			continue
		}
		if err != nil || !slices.Equal(sorted(got...), tc.want) {
			t.Errorf("Members(%s) = %v, %v; want %v", tc.chat, got, err, tc.want)
		}
	}
}
