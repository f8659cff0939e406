package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func groupTests() []testCase {
	return append([]testCase{
		{"CreateAndGet", testGroupCreateAndGet},
		{"FieldsRoundTrip", testGroupFieldsRoundTrip},
		{"DuplicateID", testGroupDuplicateID},
		{"ConcurrentCreateSameID", testGroupConcurrentCreate},
		{"UnknownGroup", testGroupUnknown},
		{"Rename", testGroupRename},
		{"PutMembersAddsAndChangesRoles", testPutMembers},
		{"RemoveMembers", testRemoveMembers},
		{"MemberNotFound", testMemberNotFound},
		{"MembersOrderedByUser", testMembersOrdered},
		{"GroupsOfPaged", testGroupsOfPaged},
		{"GroupsOfReflectsRemovalAndDeletion", testGroupsOfReflectsChanges},
		{"DeleteRemovesBothDirections", testDeleteGroup},
		{"ManyMembers", testGroupManyMembers},
	}, append(groupContextTests(), memberUpdateTests()...)...)
}

var groupBase = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func newGroup(id, name, by string) store.Group {
	return store.Group{ID: id, Name: name, CreatedBy: by, CreatedAt: groupBase}
}

// newMember joins uid at groupBase plus n milliseconds, so every member of a
// test has a distinct, ms-exact JoinedAt.
func newMember(groupID, uid string, role store.Role, n int) store.Member {
	return store.Member{GroupID: groupID, UserID: uid, Role: role,
		JoinedAt: groupBase.Add(time.Duration(n) * time.Millisecond)}
}

func mustCreateGroup(t *testing.T, s store.Store, g store.Group, members ...store.Member) {
	t.Helper()
	if err := s.CreateGroup(t.Context(), g, members); err != nil {
		t.Fatalf("CreateGroup(%q): %v", g.ID, err)
	}
}

func mustPutMembers(t *testing.T, s store.Store, groupID string, members ...store.Member) {
	t.Helper()
	if err := s.PutMembers(t.Context(), groupID, members); err != nil {
		t.Fatalf("PutMembers(%q, %d members): %v", groupID, len(members), err)
	}
}

func checkGroup(t *testing.T, s store.Store, want store.Group) {
	t.Helper()
	got, err := s.Group(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("Group(%q): %v", want.ID, err)
	}
	if got.ID != want.ID || got.Name != want.Name || got.CreatedBy != want.CreatedBy ||
		!sameInstant(got.CreatedAt, want.CreatedAt) {
		t.Fatalf("Group(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func memberDiff(got, want store.Member) string {
	if got.GroupID != want.GroupID || got.UserID != want.UserID || got.Role != want.Role ||
		!sameInstant(got.JoinedAt, want.JoinedAt) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}

func checkMembersEqual(t *testing.T, what string, got, want []store.Member) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d memberships %v, want %d %v", what, len(got), memberKeys(got), len(want), memberKeys(want))
	}
	for i := range want {
		if d := memberDiff(got[i], want[i]); d != "" {
			t.Fatalf("%s: entry %d: %s", what, i, d)
		}
	}
}

func memberKeys(ms []store.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.GroupID + "/" + m.UserID
	}
	return out
}

// checkMembers compares Members(groupID) with want, sorted by user id.
func checkMembers(t *testing.T, s store.Store, groupID string, want ...store.Member) {
	t.Helper()
	got, err := s.Members(t.Context(), groupID)
	if err != nil {
		t.Fatalf("Members(%q): %v", groupID, err)
	}
	want = slices.SortedFunc(slices.Values(want), func(a, b store.Member) int { return cmp.Compare(a.UserID, b.UserID) })
	checkMembersEqual(t, fmt.Sprintf("Members(%q)", groupID), got, want)
}

// checkGroupsOf compares the whole of GroupsOf(uid) with want, sorted by
// group id. A limit well above len(want) makes one page hold everything.
func checkGroupsOf(t *testing.T, s store.Store, uid string, want ...store.Member) {
	t.Helper()
	got, err := s.GroupsOf(t.Context(), uid, "", len(want)+10)
	if err != nil {
		t.Fatalf("GroupsOf(%q): %v", uid, err)
	}
	want = slices.SortedFunc(slices.Values(want), func(a, b store.Member) int { return cmp.Compare(a.GroupID, b.GroupID) })
	checkMembersEqual(t, fmt.Sprintf("GroupsOf(%q)", uid), got, want)
}

func checkMember(t *testing.T, s store.Store, want store.Member) {
	t.Helper()
	got, err := s.Member(t.Context(), want.GroupID, want.UserID)
	if err != nil {
		t.Fatalf("Member(%q, %q): %v", want.GroupID, want.UserID, err)
	}
	if d := memberDiff(got, want); d != "" {
		t.Fatalf("Member(%q, %q): %s", want.GroupID, want.UserID, d)
	}
}

func checkNoMember(t *testing.T, s store.Store, groupID, uid string) {
	t.Helper()
	if got, err := s.Member(t.Context(), groupID, uid); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Member(%q, %q) = %+v, %v; want ErrNotFound", groupID, uid, got, err)
	}
}

func testGroupCreateAndGet(t *testing.T, s store.Store) {
	g := newGroup("grp-1", "Climbing", "alice")
	members := []store.Member{
		newMember(g.ID, "alice", store.RoleOwner, 0),
		newMember(g.ID, "bob", store.RoleAdmin, 1),
		newMember(g.ID, "carol", store.RoleMember, 2),
	}
	mustCreateGroup(t, s, g, members...)
	checkGroup(t, s, g)
	checkMembers(t, s, g.ID, members...)
	for _, m := range members {
		checkMember(t, s, m)
		checkGroupsOf(t, s, m.UserID, m)
	}

	// A group may start empty.
	empty := newGroup("grp-2", "Quiet", "dave")
	mustCreateGroup(t, s, empty)
	checkGroup(t, s, empty)
	checkMembers(t, s, empty.ID)
	checkGroupsOf(t, s, "dave")
}

func testGroupFieldsRoundTrip(t *testing.T, s store.Store) {
	zone := time.FixedZone("Z", -(3*3600 + 1800))
	g := store.Group{
		ID:        "grp-ü:1",
		Name:      "Ünïcode \"name\"\n with\ttabs 🧗",
		CreatedBy: "u-creator",
		CreatedAt: time.Date(2024, 2, 29, 23, 59, 59, 987654321, zone),
	}
	m := store.Member{GroupID: g.ID, UserID: "u-ü", Role: store.RoleAdmin,
		JoinedAt: time.Date(2024, 3, 1, 0, 0, 0, 1_999_999, zone)}
	mustCreateGroup(t, s, g, m)
	checkGroup(t, s, g)
	checkMember(t, s, m)
	checkMembers(t, s, g.ID, m)
	checkGroupsOf(t, s, m.UserID, m)

	// An empty name is a name like any other.
	mustCreateGroup(t, s, store.Group{ID: "grp-anon", CreatedAt: g.CreatedAt})
	checkGroup(t, s, store.Group{ID: "grp-anon", CreatedAt: g.CreatedAt})
}

func testGroupDuplicateID(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := newGroup("grp-dup", "First", "alice")
	alice := newMember(first.ID, "alice", store.RoleOwner, 0)
	mustCreateGroup(t, s, first, alice)

	second := newGroup("grp-dup", "Second", "bob")
	second.CreatedAt = groupBase.Add(time.Hour)
	err := s.CreateGroup(ctx, second, []store.Member{
		newMember(second.ID, "bob", store.RoleOwner, 5),
		newMember(second.ID, "alice", store.RoleMember, 6),
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateGroup with taken id: err = %v, want ErrConflict", err)
	}
	// Nothing of the failed create may have been written.
	checkGroup(t, s, first)
	checkMembers(t, s, first.ID, alice)
	checkMember(t, s, alice)
	checkNoMember(t, s, first.ID, "bob")
	checkGroupsOf(t, s, "bob")
	checkGroupsOf(t, s, "alice", alice)
}

// Group creation races on client-chosen ids; exactly one create per id may
// win, and the group ends with the winner's members only.
func testGroupConcurrentCreate(t *testing.T, s store.Store) {
	const ids, contenders = 5, 8
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [ids][contenders]error
	)
	for c := range contenders {
		for n := range ids {
			wg.Go(func() {
				<-start
				gid := fmt.Sprintf("grp-race-%d", n)
				g := newGroup(gid, fmt.Sprintf("by %d", c), fmt.Sprintf("u%d", c))
				errs[n][c] = s.CreateGroup(t.Context(), g, []store.Member{
					newMember(gid, fmt.Sprintf("u%d", c), store.RoleOwner, c),
				})
			})
		}
	}
	close(start)
	wg.Wait()
	for n := range ids {
		gid, winner := fmt.Sprintf("grp-race-%d", n), -1
		for c, err := range errs[n] {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("CreateGroup(%s): both contenders %d and %d won", gid, winner, c)
			case err == nil:
				winner = c
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("CreateGroup(%s) by %d: err = %v, want nil or ErrConflict", gid, c, err)
			}
		}
		if winner < 0 {
			t.Fatalf("CreateGroup(%s): nobody won", gid)
		}
		checkGroup(t, s, newGroup(gid, fmt.Sprintf("by %d", winner), fmt.Sprintf("u%d", winner)))
		checkMembers(t, s, gid, newMember(gid, fmt.Sprintf("u%d", winner), store.RoleOwner, winner))
	}
}

func testGroupUnknown(t *testing.T, s store.Store) {
	ctx := t.Context()
	ops := []struct {
		name string
		call func(id string) error
	}{
		{"Group", func(id string) error { _, err := s.Group(ctx, id); return err }},
		{"RenameGroup", func(id string) error { return s.RenameGroup(ctx, id, "new name") }},
		{"DeleteGroup", func(id string) error { return s.DeleteGroup(ctx, id) }},
		{"PutMembers", func(id string) error {
			return s.PutMembers(ctx, id, []store.Member{newMember(id, "mallory", store.RoleOwner, 0)})
		}},
		{"PutMembersNone", func(id string) error { return s.PutMembers(ctx, id, nil) }},
		{"Member", func(id string) error { _, err := s.Member(ctx, id, "alice"); return err }},
	}
	// Both on an empty store and next to groups whose ids share a prefix
	// with the unknown one.
	for _, seed := range []bool{false, true} {
		if seed {
			mustCreateGroup(t, s, newGroup("g1", "one", "alice"), newMember("g1", "alice", store.RoleOwner, 0))
			mustCreateGroup(t, s, newGroup("g100", "hundred", "alice"), newMember("g100", "alice", store.RoleOwner, 0))
		}
		for _, op := range ops {
			if err := op.call("g10"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(unknown group), seeded=%v: err = %v, want ErrNotFound", op.name, seed, err)
			}
		}
		checkMembers(t, s, "g10")
		checkGroupsOf(t, s, "mallory")
	}
	// The failed calls changed nothing next door.
	checkGroup(t, s, newGroup("g1", "one", "alice"))
	checkGroup(t, s, newGroup("g100", "hundred", "alice"))
	checkGroupsOf(t, s, "alice", newMember("g1", "alice", store.RoleOwner, 0), newMember("g100", "alice", store.RoleOwner, 0))
}

func testGroupRename(t *testing.T, s store.Store) {
	g := newGroup("grp-r", "Before", "alice")
	alice := newMember(g.ID, "alice", store.RoleOwner, 0)
	mustCreateGroup(t, s, g, alice)
	other := newGroup("grp-r2", "Untouched", "bob")
	mustCreateGroup(t, s, other)

	for _, name := range []string{"After", "", "After again"} {
		if err := s.RenameGroup(t.Context(), g.ID, name); err != nil {
			t.Fatalf("RenameGroup(%q): %v", name, err)
		}
		g.Name = name
		checkGroup(t, s, g) // CreatedBy and CreatedAt are kept
	}
	checkMembers(t, s, g.ID, alice)
	checkGroup(t, s, other)
}

func testPutMembers(t *testing.T, s store.Store) {
	g := newGroup("grp-p", "Put", "alice")
	alice := newMember(g.ID, "alice", store.RoleOwner, 0)
	bob := newMember(g.ID, "bob", store.RoleMember, 1)
	mustCreateGroup(t, s, g, alice, bob)

	// Add carol and dave, promote bob (with a new join time) in one call.
	carol := newMember(g.ID, "carol", store.RoleMember, 2)
	dave := newMember(g.ID, "dave", store.RoleAdmin, 3)
	bob2 := newMember(g.ID, "bob", store.RoleAdmin, 4)
	mustPutMembers(t, s, g.ID, carol, bob2, dave)
	checkMembers(t, s, g.ID, alice, bob2, carol, dave)
	for _, m := range []store.Member{alice, bob2, carol, dave} {
		checkMember(t, s, m)
		checkGroupsOf(t, s, m.UserID, m) // the by-user direction changed too
	}

	// Demote alice; re-putting an unchanged member is harmless.
	alice2 := newMember(g.ID, "alice", store.RoleMember, 5)
	mustPutMembers(t, s, g.ID, alice2, carol)
	checkMembers(t, s, g.ID, alice2, bob2, carol, dave)
	checkGroupsOf(t, s, "alice", alice2)

	// An empty call changes nothing.
	mustPutMembers(t, s, g.ID)
	checkMembers(t, s, g.ID, alice2, bob2, carol, dave)
	checkGroup(t, s, g)
}

func testRemoveMembers(t *testing.T, s store.Store) {
	ctx := t.Context()
	g := newGroup("grp-rm", "Remove", "alice")
	alice := newMember(g.ID, "alice", store.RoleOwner, 0)
	bob := newMember(g.ID, "bob", store.RoleMember, 1)
	carol := newMember(g.ID, "carol", store.RoleMember, 2)
	mustCreateGroup(t, s, g, alice, bob, carol)
	// dave is a member of another group only: removing him here must not
	// touch that membership.
	other := newGroup("grp-rm-other", "Other", "dave")
	daveOther := newMember(other.ID, "dave", store.RoleOwner, 3)
	bobOther := newMember(other.ID, "bob", store.RoleMember, 4)
	mustCreateGroup(t, s, other, daveOther, bobOther)

	if err := s.RemoveMembers(ctx, g.ID, []string{"bob", "dave", "nobody", "bo"}); err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	checkMembers(t, s, g.ID, alice, carol)
	checkNoMember(t, s, g.ID, "bob")
	checkGroupsOf(t, s, "bob", bobOther)
	checkGroupsOf(t, s, "dave", daveOther)
	checkMembers(t, s, other.ID, bobOther, daveOther)

	// Removing again, or nobody, is not an error.
	for _, uids := range [][]string{{"bob"}, nil, {}} {
		if err := s.RemoveMembers(ctx, g.ID, uids); err != nil {
			t.Fatalf("RemoveMembers(%q): %v", uids, err)
		}
	}
	if err := s.RemoveMembers(ctx, g.ID, []string{"alice", "carol"}); err != nil {
		t.Fatalf("RemoveMembers(all): %v", err)
	}
	checkMembers(t, s, g.ID)
	checkGroupsOf(t, s, "alice")
	// The group itself outlives its last member.
	checkGroup(t, s, g)
}

func testMemberNotFound(t *testing.T, s store.Store) {
	mustCreateGroup(t, s, newGroup("g1", "one", "u1"), newMember("g1", "u1", store.RoleOwner, 0))
	mustCreateGroup(t, s, newGroup("g2", "two", "u2"), newMember("g2", "u2", store.RoleOwner, 0))
	for _, c := range []struct{ group, uid string }{
		{"g1", "u2"},  // a member of another group
		{"g2", "u1"},  // the other way round
		{"g1", "u"},   // a prefix of a member
		{"g1", "u10"}, // a member is a prefix of it
		{"g1", ""},
		{"g", "u1"},
		{"g10", "u1"},
	} {
		checkNoMember(t, s, c.group, c.uid)
	}
}

// User ids share prefixes ("u1" of "u10") and group ids too, to catch key
// layouts that let one group's range cover another's.
func testMembersOrdered(t *testing.T, s store.Store) {
	uids := []string{"u2", "u10", "u1", "u1x", "u", "a", "u1:0", "z"}
	var inG1, inG10 []store.Member
	mustCreateGroup(t, s, newGroup("g:1", "one", "a"))
	mustCreateGroup(t, s, newGroup("g:10", "ten", "a"))
	for i, uid := range uids {
		m := newMember("g:1", uid, store.RoleMember, i)
		mustPutMembers(t, s, "g:1", m) // one at a time, in unsorted order
		inG1 = append(inG1, m)
		if i%2 == 0 {
			m10 := newMember("g:10", uid+"-ten", store.RoleAdmin, 100+i)
			mustPutMembers(t, s, "g:10", m10)
			inG10 = append(inG10, m10)
		}
	}
	got, err := s.Members(t.Context(), "g:1")
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	// Byte order: "u10" < "u1:0" < "u1x" since '0' < ':' < 'x'.
	want := []string{"a", "u", "u1", "u10", "u1:0", "u1x", "u2", "z"}
	if gotIDs := userIDs(got); !slices.Equal(gotIDs, want) {
		t.Fatalf("Members(g:1) user ids = %q, want %q", gotIDs, want)
	}
	checkMembers(t, s, "g:1", inG1...)
	checkMembers(t, s, "g:10", inG10...)
}

func userIDs(ms []store.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.UserID
	}
	return out
}

func groupIDs(ms []store.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.GroupID
	}
	return out
}

func testGroupsOfPaged(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Created in unsorted order; "u1" is in all, "u10" (a longer id with u1
	// as prefix) and "u" in some, to catch prefix leaks between users.
	gids := []string{"g:5", "g:1", "g:10", "g:3", "g:2", "g:1:x", "dm-like"}
	byGroup := map[string]store.Member{}
	for i, gid := range gids {
		m := newMember(gid, "u1", store.Role([]store.Role{store.RoleOwner, store.RoleAdmin, store.RoleMember}[i%3]), i)
		byGroup[gid] = m
		members := []store.Member{m}
		if i%2 == 0 {
			members = append(members, newMember(gid, "u10", store.RoleMember, 50+i), newMember(gid, "u", store.RoleMember, 60+i))
		}
		mustCreateGroup(t, s, newGroup(gid, "group "+gid, "u1"), members...)
	}
	sorted := slices.Sorted(slices.Values(gids))
	wantAll := make([]store.Member, len(sorted))
	for i, gid := range sorted {
		wantAll[i] = byGroup[gid]
	}

	// Three pages of at most 3, then an empty one.
	var walked []store.Member
	after, pages := "", 0
	for {
		page, err := s.GroupsOf(ctx, "u1", after, 3)
		if err != nil {
			t.Fatalf("GroupsOf(u1, after %q, 3): %v", after, err)
		}
		if len(page) > 3 {
			t.Fatalf("GroupsOf(u1, after %q, 3) returned %d entries", after, len(page))
		}
		if len(page) == 0 {
			break
		}
		if pages++; pages > len(gids) {
			t.Fatalf("GroupsOf walk does not end: page %d is %q (is after exclusive?)", pages, groupIDs(page))
		}
		walked = append(walked, page...)
		after = page[len(page)-1].GroupID
	}
	if pages != 3 {
		t.Fatalf("GroupsOf walk took %d non-empty pages, want 3 (7 groups, limit 3)", pages)
	}
	checkMembersEqual(t, "GroupsOf walk", walked, wantAll)

	cases := []struct {
		after string
		limit int
		want  []string
	}{
		{"", 1, sorted[:1]},
		{"", 100, sorted},
		{sorted[0], 2, sorted[1:3]},
		{"g:1", 2, []string{"g:10", "g:1:x"}}, // exclusive of after; ':' > '0'
		{"g:0", 100, []string{"g:1", "g:10", "g:1:x", "g:2", "g:3", "g:5"}},
		{"g:10x", 1, []string{"g:1:x"}}, // after need not be a group of uid
		{"g:1:x0", 1, []string{"g:2"}},
		{"g:5", 10, nil},
		{"zzz", 10, nil},
	}
	for _, c := range cases {
		got, err := s.GroupsOf(ctx, "u1", c.after, c.limit)
		if err != nil {
			t.Fatalf("GroupsOf(u1, %q, %d): %v", c.after, c.limit, err)
		}
		if ids := groupIDs(got); !slices.Equal(ids, c.want) {
			t.Fatalf("GroupsOf(u1, %q, %d) = %q, want %q", c.after, c.limit, ids, c.want)
		}
		for _, m := range got {
			if d := memberDiff(m, byGroup[m.GroupID]); d != "" {
				t.Fatalf("GroupsOf(u1, %q, %d): %s", c.after, c.limit, d)
			}
		}
	}
	if got, err := s.GroupsOf(ctx, "u10", "", 100); err != nil || !slices.Equal(groupIDs(got), []string{"dm-like", "g:10", "g:2", "g:5"}) {
		t.Fatalf("GroupsOf(u10) = %q, %v; want dm-like g:10 g:2 g:5", groupIDs(got), err)
	}
	if got, err := s.GroupsOf(ctx, "nobody", "", 10); err != nil || len(got) != 0 {
		t.Fatalf("GroupsOf(nobody) = %q, %v; want none", groupIDs(got), err)
	}
}

func testGroupsOfReflectsChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	var want []store.Member
	for i := range 5 {
		gid := fmt.Sprintf("g%d", i)
		m := newMember(gid, "alice", store.RoleMember, i)
		mustCreateGroup(t, s, newGroup(gid, gid, "alice"), m, newMember(gid, "bob", store.RoleOwner, 10+i))
		want = append(want, m)
	}
	checkGroupsOf(t, s, "alice", want...)

	if err := s.RemoveMembers(ctx, "g1", []string{"alice"}); err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	if err := s.DeleteGroup(ctx, "g3"); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	checkGroupsOf(t, s, "alice", want[0], want[2], want[4])
	// Paging skips the removed and deleted groups too.
	page, err := s.GroupsOf(ctx, "alice", "g0", 2)
	if err != nil || !slices.Equal(groupIDs(page), []string{"g2", "g4"}) {
		t.Fatalf("GroupsOf(alice, g0, 2) = %q, %v; want g2 g4", groupIDs(page), err)
	}
	if got, err := s.GroupsOf(ctx, "bob", "", 10); err != nil || !slices.Equal(groupIDs(got), []string{"g0", "g1", "g2", "g4"}) {
		t.Fatalf("GroupsOf(bob) = %q, %v; want g0 g1 g2 g4", groupIDs(got), err)
	}
}

func testDeleteGroup(t *testing.T, s store.Store) {
	ctx := t.Context()
	g := newGroup("grp-del", "Doomed", "alice")
	members := []store.Member{
		newMember(g.ID, "alice", store.RoleOwner, 0),
		newMember(g.ID, "bob", store.RoleMember, 1),
	}
	mustCreateGroup(t, s, g, members...)
	keep := newGroup("grp-del-keep", "Kept", "bob")
	bobKeep := newMember(keep.ID, "bob", store.RoleOwner, 2)
	mustCreateGroup(t, s, keep, bobKeep)
	// Messages of the group's chat must survive the group.
	chat := "g:" + g.ID
	msgs := makeMessages(chat, 1, 3)
	mustAppend(t, s, msgs)

	if err := s.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	if _, err := s.Group(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Group after delete: err = %v, want ErrNotFound", err)
	}
	checkMembers(t, s, g.ID)
	for _, m := range members {
		checkNoMember(t, s, g.ID, m.UserID)
	}
	checkGroupsOf(t, s, "alice")
	checkGroupsOf(t, s, "bob", bobKeep)
	checkGroup(t, s, keep)
	checkMembers(t, s, keep.ID, bobKeep)
	checkHistory(t, s, chat, msgs, []historyCase{{store.HistoryQuery{Limit: 10}, 1, 3}})

	if err := s.DeleteGroup(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteGroup: err = %v, want ErrNotFound", err)
	}
	// The id is free again, and the new group starts with no old members.
	g2 := newGroup(g.ID, "Reborn", "carol")
	carol := newMember(g.ID, "carol", store.RoleOwner, 9)
	mustCreateGroup(t, s, g2, carol)
	checkGroup(t, s, g2)
	checkMembers(t, s, g.ID, carol)
	checkGroupsOf(t, s, "alice")
}

func testGroupManyMembers(t *testing.T, s store.Store) {
	const n = 500
	g := newGroup("grp-big", "Big", "u0000")
	all := make([]store.Member, n)
	for i := range all {
		role := store.RoleMember
		if i == 0 {
			role = store.RoleOwner
		}
		// Reverse order, so the store has to sort.
		all[i] = newMember(g.ID, fmt.Sprintf("u%04d", n-1-i), role, i)
	}
	mustCreateGroup(t, s, g, all[:1]...)
	mustPutMembers(t, s, g.ID, all[1:]...) // 499 in one atomic write
	got, err := s.Members(t.Context(), g.ID)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	if len(got) != n {
		t.Fatalf("Members returned %d, want %d", len(got), n)
	}
	checkMembers(t, s, g.ID, all...)
	for _, i := range []int{0, 1, 250, n - 1} {
		checkGroupsOf(t, s, all[i].UserID, all[i])
	}

	if err := s.DeleteGroup(t.Context(), g.ID); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	checkMembers(t, s, g.ID)
	for _, i := range []int{0, 1, 250, n - 1} {
		checkGroupsOf(t, s, all[i].UserID)
	}
}

// groupContextTests check that every Groups call fails with a dead
// context's error and that a write so refused changed nothing.
func groupContextTests() []testCase {
	const gid = "grp-ctx"
	owner := newMember(gid, "alice", store.RoleOwner, 0)
	ops := []struct {
		name string
		call func(ctx context.Context, s store.Store) error
	}{
		{"CreateGroup", func(ctx context.Context, s store.Store) error {
			return s.CreateGroup(ctx, newGroup("grp-ctx-new", "new", "bob"), []store.Member{newMember("grp-ctx-new", "bob", store.RoleOwner, 0)})
		}},
		{"RenameGroup", func(ctx context.Context, s store.Store) error { return s.RenameGroup(ctx, gid, "renamed") }},
		{"DeleteGroup", func(ctx context.Context, s store.Store) error { return s.DeleteGroup(ctx, gid) }},
		{"PutMembers", func(ctx context.Context, s store.Store) error {
			return s.PutMembers(ctx, gid, []store.Member{newMember(gid, "bob", store.RoleMember, 1)})
		}},
		{"RemoveMembers", func(ctx context.Context, s store.Store) error { return s.RemoveMembers(ctx, gid, []string{"alice"}) }},
		{"Group", func(ctx context.Context, s store.Store) error { _, err := s.Group(ctx, gid); return err }},
		{"Member", func(ctx context.Context, s store.Store) error { _, err := s.Member(ctx, gid, "alice"); return err }},
		{"Members", func(ctx context.Context, s store.Store) error { _, err := s.Members(ctx, gid); return err }},
		{"GroupsOf", func(ctx context.Context, s store.Store) error { _, err := s.GroupsOf(ctx, "alice", "", 10); return err }},
	}
	cases := make([]testCase, 0, len(ops))
	for _, op := range ops {
		cases = append(cases, testCase{"Canceled" + op.name, func(t *testing.T, s store.Store) {
			g := newGroup(gid, "ctx", "alice")
			mustCreateGroup(t, s, g, owner)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := op.call(ctx, s); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with canceled context: err = %v, want context.Canceled", op.name, err)
			}
			checkGroup(t, s, g)
			checkMembers(t, s, gid, owner)
			checkGroupsOf(t, s, "alice", owner)
			checkGroupsOf(t, s, "bob")
			if _, err := s.Group(t.Context(), "grp-ctx-new"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("group created despite canceled context: err = %v", err)
			}
		}})
	}
	return cases
}
