package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/mqchat/mqchat/store"
)

// batchReadTests cover the reads that serve a whole screen at once.
func batchReadTests() []testCase {
	return []testCase{
		{"UsersByID", testUsersByID},
		{"GroupsByID", testGroupsByID},
		{"LastMessages", testLastMessages},
		{"MembersOfGroups", testMembersOfGroups},
		{"EmptyInput", testBatchEmpty},
		{"CanceledContext", testBatchCanceled},
	}
}

func testUsersByID(t *testing.T, s store.Store) {
	alice, bob := newUser("01HZALICE", "alice"), newUser("01HZBOB", "bob")
	mustCreateUser(t, s, alice)
	mustCreateUser(t, s, bob)
	got, err := s.UsersByID(t.Context(), []string{bob.ID, "01HZNOBODY", alice.ID, bob.ID})
	if err != nil {
		t.Fatalf("UsersByID: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("UsersByID = %d users (%v), want alice and bob", len(got), got)
	}
	for _, want := range []store.User{alice, bob} {
		checkUser(t, "UsersByID["+want.ID+"]", got[want.ID], want)
	}
}

func testGroupsByID(t *testing.T, s store.Store) {
	g1, g2 := newGroup("grp-1", "one", "u1"), newGroup("grp-2", "two", "u2")
	mustCreateGroup(t, s, g1, store.Member{GroupID: g1.ID, UserID: "u1", Role: store.RoleOwner, JoinedAt: g1.CreatedAt})
	mustCreateGroup(t, s, g2, store.Member{GroupID: g2.ID, UserID: "u2", Role: store.RoleOwner, JoinedAt: g2.CreatedAt})
	mustCreateGroup(t, s, newGroup("grp-3", "three", "u3"))
	if err := s.DeleteGroup(t.Context(), "grp-3"); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	got, err := s.GroupsByID(t.Context(), []string{"grp-2", "grp-3", "grp-missing", "grp-1"})
	if err != nil {
		t.Fatalf("GroupsByID: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("GroupsByID = %v, want grp-1 and grp-2 (grp-3 was deleted)", got)
	}
	for _, want := range []store.Group{g1, g2} {
		g := got[want.ID]
		if g.ID != want.ID || g.Name != want.Name || g.CreatedBy != want.CreatedBy || !sameInstant(g.CreatedAt, want.CreatedAt) {
			t.Fatalf("GroupsByID[%s] = %+v, want %+v", want.ID, g, want)
		}
	}
}

func testLastMessages(t *testing.T, s store.Store) {
	// Enough messages that a backend partitioning by seq range (Cassandra's
	// 4096-seq buckets) has its newest in a later partition than its first.
	long := makeMessages("chat:long", 1, 4100)
	for i := 0; i < len(long); i += 500 {
		mustAppend(t, s, long[i:min(i+500, len(long))])
	}
	short := makeMessages("chat:short", 1, 3)
	mustAppend(t, s, short)
	// A chat id that is a prefix of another must not see the other's rows.
	prefix := makeMessages("chat:s", 1, 1)
	mustAppend(t, s, prefix)
	got, err := s.LastMessages(t.Context(), []string{"chat:short", "chat:empty", "chat:long", "chat:short", "chat:s"})
	if err != nil {
		t.Fatalf("LastMessages: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("LastMessages returned chats %v, want chat:long, chat:short and chat:s", keys(got))
	}
	for chat, want := range map[string]store.Message{
		"chat:long": long[len(long)-1], "chat:short": short[len(short)-1], "chat:s": prefix[0],
	} {
		if d := messageDiff(got[chat], want); d != "" {
			t.Fatalf("LastMessages[%s]: %s", chat, d)
		}
	}
}

func testMembersOfGroups(t *testing.T, s store.Store) {
	g1, g2, g3 := newGroup("grp-1", "one", "u1"), newGroup("grp-2", "two", "u2"), newGroup("grp-3", "three", "u3")
	m1 := []store.Member{newMember(g1.ID, "u1", store.RoleOwner, 1), newMember(g1.ID, "u4", store.RoleMember, 2)}
	m2 := []store.Member{newMember(g2.ID, "u2", store.RoleOwner, 3)}
	mustCreateGroup(t, s, g1, m1[1], m1[0]) // out of order: the result is by user id
	mustCreateGroup(t, s, g2, m2...)
	mustCreateGroup(t, s, g3, newMember(g3.ID, "u3", store.RoleOwner, 4))
	got, err := s.MembersOfGroups(t.Context(), []string{"grp-2", "grp-missing", "grp-1"})
	if err != nil {
		t.Fatalf("MembersOfGroups: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("MembersOfGroups = %v, want grp-1 and grp-2 only", keys(got))
	}
	for gid, want := range map[string][]store.Member{"grp-1": m1, "grp-2": m2} {
		if len(got[gid]) != len(want) {
			t.Fatalf("MembersOfGroups[%s] = %+v, want %+v", gid, got[gid], want)
		}
		for i := range want {
			g, w := got[gid][i], want[i]
			if g.GroupID != w.GroupID || g.UserID != w.UserID || g.Role != w.Role || !sameInstant(g.JoinedAt, w.JoinedAt) {
				t.Fatalf("MembersOfGroups[%s][%d] = %+v, want %+v", gid, i, g, w)
			}
		}
	}
}

func testBatchEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	users, err := s.UsersByID(ctx, nil)
	if err != nil || users == nil || len(users) != 0 {
		t.Fatalf("UsersByID(nil) = %v, %v; want an empty map", users, err)
	}
	groups, err := s.GroupsByID(ctx, []string{})
	if err != nil || groups == nil || len(groups) != 0 {
		t.Fatalf("GroupsByID([]) = %v, %v; want an empty map", groups, err)
	}
	members, err := s.MembersOfGroups(ctx, nil)
	if err != nil || members == nil || len(members) != 0 {
		t.Fatalf("MembersOfGroups(nil) = %v, %v; want an empty map", members, err)
	}
	msgs, err := s.LastMessages(ctx, nil)
	if err != nil || msgs == nil || len(msgs) != 0 {
		t.Fatalf("LastMessages(nil) = %v, %v; want an empty map", msgs, err)
	}
}

func testBatchCanceled(t *testing.T, s store.Store) {
	mustCreateUser(t, s, newUser("01HZALICE", "alice"))
	mustAppend(t, s, makeMessages("ctx:chat", 1, 2))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"UsersByID":    func() error { _, err := s.UsersByID(ctx, []string{"01HZALICE"}); return err },
		"GroupsByID":   func() error { _, err := s.GroupsByID(ctx, []string{"g"}); return err },
		"LastMessages": func() error { _, err := s.LastMessages(ctx, []string{"ctx:chat"}); return err },
		"MembersOfGroups": func() error {
			_, err := s.MembersOfGroups(ctx, []string{"g"})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with canceled context: err = %v, want context.Canceled", name, err)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
