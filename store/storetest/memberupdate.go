package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/store"
)

// memberUpdateTests check UpdateMembers: a decision over the whole group
// (a member limit, one owner) must still hold when many writers race, as
// they do when several requests, or several nodes, change one group.
func memberUpdateTests() []testCase {
	return []testCase{
		{"UpdateMembersPutsAndRemoves", testUpdateMembersPutsAndRemoves},
		{"UpdateMembersRefusalWritesNothing", testUpdateMembersRefusal},
		{"UpdateMembersUnknownGroup", testUpdateMembersUnknown},
		{"UpdateMembersCanceled", testUpdateMembersCanceled},
		{"UpdateMembersRacingAddsKeepLimit", testUpdateMembersLimitRace},
		{"UpdateMembersRacingTransfersKeepOneOwner", testUpdateMembersOwnerRace},
		{"UpdateMembersRacingDeleteLeavesNoMembers", testUpdateMembersDeleteRace},
	}
}

var errRefused = errors.New("refused by decide")

func testUpdateMembersPutsAndRemoves(t *testing.T, s store.Store) {
	const gid = "grp-upd"
	owner, bob := newMember(gid, "alice", store.RoleOwner, 0), newMember(gid, "bob", store.RoleMember, 1)
	mustCreateGroup(t, s, newGroup(gid, "upd", "alice"), owner, bob)
	carol := newMember(gid, "carol", store.RoleAdmin, 2)
	var seen []store.Member
	err := s.UpdateMembers(t.Context(), gid, func(ms []store.Member) (store.MemberChange, error) {
		seen = append([]store.Member(nil), ms...)
		return store.MemberChange{Put: []store.Member{carol}, Remove: []string{"bob", "nobody"}}, nil
	})
	if err != nil {
		t.Fatalf("UpdateMembers: %v", err)
	}
	checkMembersEqual(t, "members handed to decide", seen, []store.Member{owner, bob})
	checkMembers(t, s, gid, owner, carol)
	checkGroupsOf(t, s, "carol", carol)
	checkGroupsOf(t, s, "bob")
}

func testUpdateMembersRefusal(t *testing.T, s store.Store) {
	const gid = "grp-upd-refuse"
	owner := newMember(gid, "alice", store.RoleOwner, 0)
	mustCreateGroup(t, s, newGroup(gid, "refuse", "alice"), owner)
	err := s.UpdateMembers(t.Context(), gid, func([]store.Member) (store.MemberChange, error) {
		return store.MemberChange{Put: []store.Member{newMember(gid, "bob", store.RoleMember, 1)}}, errRefused
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("UpdateMembers with a refusing decide: err = %v, want it wrapped", err)
	}
	checkMembers(t, s, gid, owner)
	checkGroupsOf(t, s, "bob")
}

func testUpdateMembersUnknown(t *testing.T, s store.Store) {
	called := false
	err := s.UpdateMembers(t.Context(), "grp-none", func([]store.Member) (store.MemberChange, error) {
		called = true
		return store.MemberChange{Put: []store.Member{newMember("grp-none", "bob", store.RoleMember, 1)}}, nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateMembers(unknown group): err = %v, want ErrNotFound", err)
	}
	if called {
		t.Fatal("UpdateMembers(unknown group) called decide")
	}
	checkGroupsOf(t, s, "bob")
}

func testUpdateMembersCanceled(t *testing.T, s store.Store) {
	const gid = "grp-upd-ctx"
	owner := newMember(gid, "alice", store.RoleOwner, 0)
	mustCreateGroup(t, s, newGroup(gid, "ctx", "alice"), owner)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.UpdateMembers(ctx, gid, func([]store.Member) (store.MemberChange, error) {
		return store.MemberChange{Put: []store.Member{newMember(gid, "bob", store.RoleMember, 1)}}, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("UpdateMembers with canceled context: err = %v, want context.Canceled", err)
	}
	checkMembers(t, s, gid, owner)
}

// race runs n calls of f at once and returns their errors.
func race(n int, f func(i int) error) []error {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func testUpdateMembersLimitRace(t *testing.T, s store.Store) {
	const gid, limit, contenders = "grp-upd-limit", 5, 20
	owner := newMember(gid, "owner", store.RoleOwner, 0)
	mustCreateGroup(t, s, newGroup(gid, "limit", "owner"), owner)
	errs := race(contenders, func(i int) error {
		return s.UpdateMembers(t.Context(), gid, func(ms []store.Member) (store.MemberChange, error) {
			if len(ms)+1 > limit {
				return store.MemberChange{}, errRefused
			}
			return store.MemberChange{Put: []store.Member{newMember(gid, fmt.Sprintf("u%02d", i), store.RoleMember, i+1)}}, nil
		})
	})
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, errRefused):
			t.Fatalf("contender %d: err = %v, want nil or the refusal", i, err)
		}
	}
	ms, err := s.Members(t.Context(), gid)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	if len(ms) != limit || won != limit-1 {
		t.Fatalf("%d racing adds under a limit of %d: %d succeeded, %d members %v; want %d and %d",
			contenders, limit, won, len(ms), memberKeys(ms), limit-1, limit)
	}
}

// transfer hands the group from `from` to `to` if `from` is still owner,
// as the group service does.
func transfer(gid, from, to string) func([]store.Member) (store.MemberChange, error) {
	return func(ms []store.Member) (store.MemberChange, error) {
		var me, target *store.Member
		for i := range ms {
			switch ms[i].UserID {
			case from:
				me = &ms[i]
			case to:
				target = &ms[i]
			}
		}
		if me == nil || me.Role != store.RoleOwner || target == nil {
			return store.MemberChange{}, errRefused
		}
		return store.MemberChange{Put: []store.Member{
			{GroupID: gid, UserID: to, Role: store.RoleOwner, JoinedAt: target.JoinedAt},
			{GroupID: gid, UserID: from, Role: store.RoleAdmin, JoinedAt: me.JoinedAt},
		}}, nil
	}
}

func testUpdateMembersOwnerRace(t *testing.T, s store.Store) {
	const rounds = 10
	for r := range rounds {
		gid := fmt.Sprintf("grp-upd-owner-%d", r)
		mustCreateGroup(t, s, newGroup(gid, "owner", "o"),
			newMember(gid, "o", store.RoleOwner, 0),
			newMember(gid, "a", store.RoleMember, 1),
			newMember(gid, "b", store.RoleMember, 2))
		targets := []string{"a", "b"}
		errs := race(len(targets), func(i int) error {
			return s.UpdateMembers(t.Context(), gid, transfer(gid, "o", targets[i]))
		})
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, errRefused):
				t.Fatalf("round %d: transfer to %s: err = %v", r, targets[i], err)
			}
		}
		ms, err := s.Members(t.Context(), gid)
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		owners := 0
		for _, m := range ms {
			if m.Role == store.RoleOwner {
				owners++
			}
		}
		if won != 1 || owners != 1 {
			t.Fatalf("round %d: two racing transfers: %d succeeded, %d owners in %+v; want 1 and 1", r, won, owners, ms)
		}
	}
}

func testUpdateMembersDeleteRace(t *testing.T, s store.Store) {
	const gid, adders = "grp-upd-del", 10
	mustCreateGroup(t, s, newGroup(gid, "del", "o"), newMember(gid, "o", store.RoleOwner, 0))
	errs := race(adders+1, func(i int) error {
		if i == adders {
			return s.DeleteGroup(t.Context(), gid)
		}
		return s.UpdateMembers(t.Context(), gid, func([]store.Member) (store.MemberChange, error) {
			return store.MemberChange{Put: []store.Member{newMember(gid, fmt.Sprintf("u%02d", i), store.RoleMember, i+1)}}, nil
		})
	})
	if errs[adders] != nil {
		t.Fatalf("DeleteGroup: %v", errs[adders])
	}
	for i, err := range errs[:adders] {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("adder %d: err = %v, want nil or ErrNotFound", i, err)
		}
		checkGroupsOf(t, s, fmt.Sprintf("u%02d", i))
	}
	checkMembers(t, s, gid)
}
