package pebble

import (
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

// DeleteGroup must leave no key of the group behind in either index.
func TestDeleteGroupLeavesNoKeys(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir(), Options{})
	now := time.Now()
	members := []store.Member{
		{UserID: "u1", Role: store.RoleOwner, JoinedAt: now},
		{UserID: "u2", Role: store.RoleMember, JoinedAt: now},
	}
	if err := s.CreateGroup(ctx, store.Group{ID: "g1", Name: "x", CreatedAt: now}, members); err != nil {
		t.Fatal(err)
	}
	if g, m := countPrefix(t, s, prefixGroupMember), countPrefix(t, s, prefixUserGroup); g != 2 || m != 2 {
		t.Fatalf("before delete: %d gm/ and %d ug/ keys, want 2 and 2", g, m)
	}
	if err := s.DeleteGroup(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{prefixGroup, prefixGroupMember, prefixUserGroup} {
		if n := countPrefix(t, s, p); n != 0 {
			t.Fatalf("after delete: %d keys under %s", n, p)
		}
	}
}

func TestGroupsCursorsRejectNUL(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir(), Options{})
	now := time.Now()
	if err := s.CreateGroup(ctx, store.Group{ID: "g1", CreatedAt: now}, nil); err != nil {
		t.Fatal(err)
	}
	writes := map[string]error{
		"CreateGroup id":     s.CreateGroup(ctx, store.Group{ID: "g\x00"}, nil),
		"CreateGroup member": s.CreateGroup(ctx, store.Group{ID: "g2"}, []store.Member{{UserID: "u\x00"}}),
		"PutMembers member":  s.PutMembers(ctx, "g1", []store.Member{{UserID: "u1"}, {UserID: "u\x00"}}),
		"RemoveMembers user": s.RemoveMembers(ctx, "g1", []string{"u\x00"}),
		"RenameGroup id":     s.RenameGroup(ctx, "g\x00", "x"),
		"DeleteGroup id":     s.DeleteGroup(ctx, "g\x00"),
		"JoinChat user":      s.JoinChat(ctx, "u\x00", "c", now),
		"JoinChat chat":      s.JoinChat(ctx, "u", "c\x00", now),
		"LeaveChat chat":     s.LeaveChat(ctx, "u", "c\x00", now),
	}
	for name, err := range writes {
		if !errors.Is(err, errBadID) {
			t.Errorf("%s with NUL: err = %v, want errBadID", name, err)
		}
	}
	if err := s.PutMembers(ctx, "g1", []store.Member{{GroupID: "g2", UserID: "u1"}}); !errors.Is(err, errMemberGroup) {
		t.Errorf("PutMembers with another group's member: err = %v, want errMemberGroup", err)
	}
	// Nothing of the rejected writes was stored (the PutMembers batch held u1 first).
	if n := countPrefix(t, s, prefixGroupMember) + countPrefix(t, s, prefixUserGroup) + countPrefix(t, s, prefixCursor); n != 0 {
		t.Fatalf("%d keys written by rejected calls", n)
	}
	if _, err := s.Member(ctx, "g1", "u\x00"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Member with NUL: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ChatState(ctx, "u\x00", "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ChatState with NUL: err = %v, want ErrNotFound", err)
	}
}

func TestGroupsCursorsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	now := time.Now().Truncate(time.Millisecond)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := store.Member{GroupID: "g1", UserID: "u1", Role: store.RoleAdmin, JoinedAt: now}
	if err := s.CreateGroup(ctx, store.Group{ID: "g1", Name: "n", CreatedBy: "u1", CreatedAt: now}, []store.Member{m}); err != nil {
		t.Fatal(err)
	}
	if err := s.JoinChat(ctx, "u1", "g:g1", now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AdvanceCursors(ctx, "u1", "g:g1", 7, 5, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AdvanceCursors(ctx, "u1", "g:g1", 9, 9, now); !errors.Is(err, ErrClosed) {
		t.Fatalf("AdvanceCursors after Close: err = %v, want ErrClosed", err)
	}
	if _, err := s.GroupsOf(ctx, "u1", "", 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("GroupsOf after Close: err = %v, want ErrClosed", err)
	}

	s = openTest(t, dir, Options{})
	if g, err := s.Group(ctx, "g1"); err != nil || g.Name != "n" || !g.CreatedAt.Equal(now) {
		t.Fatalf("Group after reopen = %+v, %v", g, err)
	}
	if got, err := s.GroupsOf(ctx, "u1", "", 10); err != nil || len(got) != 1 || got[0].GroupID != "g1" || got[0].Role != m.Role || !got[0].JoinedAt.Equal(now) {
		t.Fatalf("GroupsOf after reopen = %+v, %v; want %+v", got, err, m)
	}
	if st, err := s.ChatState(ctx, "u1", "g:g1"); err != nil || st.DeliveredSeq != 7 || st.ReadSeq != 5 {
		t.Fatalf("ChatState after reopen = %+v, %v", st, err)
	}
}

func TestGroupCursorCodecRejectsCorrupt(t *testing.T) {
	g := encodeGroup(&store.Group{Name: "n", CreatedBy: "u", CreatedAt: time.Now()})
	m := encodeMember(nil, &store.Member{Role: store.RoleOwner, JoinedAt: time.Now()})
	c := encodeChatState(&store.ChatState{DeliveredSeq: 3, ReadSeq: 2, Left: true, UpdatedAt: time.Now()})
	if st, err := decodeChatState("u", "c", c); err != nil || !st.Left || st.DeliveredSeq != 3 || st.ReadSeq != 2 {
		t.Fatalf("decodeChatState round trip = %+v, %v", st, err)
	}
	badFlags := append([]byte(nil), c...)
	badFlags[3] = 0x80 // version, two one-byte uvarints, then flags
	for name, bad := range map[string][][]byte{
		"group":     {nil, {9}, g[:2], append(append([]byte(nil), g...), 0)},
		"member":    {nil, {9}, m[:2], append(append([]byte(nil), m...), 0)},
		"chatState": {nil, {9}, c[:3], append(append([]byte(nil), c...), 0), badFlags},
	} {
		for _, v := range bad {
			var err error
			switch name {
			case "group":
				_, err = decodeGroup("g", v)
			case "member":
				_, err = decodeMember("g", "u", v)
			case "chatState":
				_, err = decodeChatState("u", "c", v)
			}
			if !errors.Is(err, errCorrupt) {
				t.Errorf("decode %s(%q): err = %v, want errCorrupt", name, v, err)
			}
		}
	}
}
