package groups

import (
	"context"
	"slices"
	"strings"

	"github.com/mqchat/mqchat/store"
)

// LeaveAll takes uid out of every group, for the deletion of its account.
// It is not rate-limited (the account, not its owner, is acting) and it is
// idempotent, so an interrupted deletion is finished by running it again.
//
// A group uid owns is handed over first: to its longest-standing admin, or
// if it has none to its longest-standing member (ties broken by user id),
// so the people still talking keep their group. A group uid is alone in is
// deleted: nobody could ever read it again.
func (s *Service) LeaveAll(ctx context.Context, uid string) error {
	for {
		// Always from the start: each pass removes what it lists.
		page, err := s.st.GroupsOf(ctx, uid, "", 100)
		if err != nil {
			return s.internal(ctx, "groups of user", err)
		}
		if len(page) == 0 {
			return nil
		}
		for _, m := range page {
			if err := s.leaveForDeletion(ctx, uid, m.GroupID); err != nil {
				return err
			}
		}
	}
}

func (s *Service) leaveForDeletion(ctx context.Context, uid, gid string) error {
	ms, err := s.st.Members(ctx, gid)
	if err != nil {
		return s.internal(ctx, "members", err)
	}
	me, ok := find(ms, uid)
	if !ok {
		return nil
	}
	all := userIDs(ms)
	if len(ms) == 1 {
		err := s.st.DeleteGroup(ctx, gid)
		s.opts.Membership.GroupDeleted(gid)
		if err != nil {
			return s.storeErr(ctx, gid, "delete group", err)
		}
		s.leave(ctx, gid, all)
		return nil
	}
	if me.Role == store.RoleOwner {
		heir := successor(ms, uid)
		if err := s.st.PutMembers(ctx, gid, []store.Member{{GroupID: gid, UserID: heir.UserID, Role: store.RoleOwner, JoinedAt: heir.JoinedAt}}); err != nil {
			return s.storeErr(ctx, gid, "hand over group", err)
		}
		seq := s.record(ctx, gid, system{Op: "role_changed", By: uid, Users: []string{heir.UserID}, Role: string(store.RoleOwner)}, all)
		s.announce(all, Event{Op: "role_changed", GroupID: gid, By: uid, Seq: seq, Users: []string{heir.UserID}, Role: string(store.RoleOwner)})
	}
	err = s.st.RemoveMembers(ctx, gid, []string{uid})
	s.opts.Membership.MembersChanged(gid, []string{uid})
	if err != nil {
		return s.storeErr(ctx, gid, "remove member", err)
	}
	s.leave(ctx, gid, []string{uid})
	seq := s.record(ctx, gid, system{Op: "member_left", By: uid, Users: []string{uid}}, all)
	s.announce(all, Event{Op: "member_left", GroupID: gid, By: uid, Seq: seq, Users: []string{uid}})
	return nil
}

// successor is the member who inherits a group from its departing owner:
// the longest-standing admin, else the longest-standing member.
func successor(ms []store.Member, owner string) store.Member {
	rank := func(r store.Role) int {
		if r == store.RoleAdmin {
			return 0
		}
		return 1
	}
	others := slices.DeleteFunc(slices.Clone(ms), func(m store.Member) bool { return m.UserID == owner })
	return slices.MinFunc(others, func(a, b store.Member) int {
		if c := rank(a.Role) - rank(b.Role); c != 0 {
			return c
		}
		if c := a.JoinedAt.Compare(b.JoinedAt); c != 0 {
			return c
		}
		return strings.Compare(a.UserID, b.UserID)
	})
}
