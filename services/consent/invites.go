package consent

import (
	"context"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Group invitation modes (Options.GroupInvites).
const (
	// InvitesConsent: a user put in a group by someone they share no
	// accepted chat with is invited, and becomes a member on accepting.
	InvitesConsent = "consent"
	// InvitesAuto: users are added at once (as before invitations).
	InvitesAuto = "auto"
)

// Screen sorts the users actor puts into a group: those who block actor
// are left out silently (actor is answered as if they were not named),
// those who share an accepted chat with actor (or everyone, in auto mode)
// join at once, the others are to be invited (Invite).
func (s *Service) Screen(ctx context.Context, actor string, uids []string) (direct, invite []string, err error) {
	for _, u := range uids {
		blocked, err := s.Blocked(ctx, u, actor)
		if err != nil {
			return nil, nil, err
		}
		if blocked {
			continue
		}
		accepted := s.opts.GroupInvites == InvitesAuto
		if !accepted {
			if accepted, err = s.acceptedChat(ctx, actor, u); err != nil {
				return nil, nil, err
			}
		}
		if accepted {
			direct = append(direct, u)
		} else {
			invite = append(invite, u)
		}
	}
	return direct, invite, nil
}

// acceptedChat reports whether a and b share a group, or a 1:1 chat with a
// message that is no pending request.
func (s *Service) acceptedChat(ctx context.Context, a, b string) (bool, error) {
	if s.rel == nil {
		return false, nil
	}
	related, err := s.rel.Related(ctx, a, b)
	if err != nil || !related {
		return false, err
	}
	pending, err := s.PendingChat(ctx, chat.DirectChatID(a, b))
	return !pending, err
}

// Invite records invitations of uids into gid by actor.
func (s *Service) Invite(ctx context.Context, actor, gid string, uids []string) error {
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	for _, u := range uids {
		if err := s.st.PutInvite(ctx, store.GroupInvite{UserID: u, GroupID: gid, From: actor, CreatedAt: now}); err != nil {
			return s.internal(ctx, "put invite", err)
		}
	}
	return nil
}

// Invites lists uid's pending invitations by group id.
func (s *Service) Invites(ctx context.Context, uid string) ([]store.GroupInvite, error) {
	invs, err := s.st.InvitesOf(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "invites", err)
	}
	return invs, nil
}

// TakeInvite removes uid's invitation into gid and returns it; ok is false
// when there was none.
func (s *Service) TakeInvite(ctx context.Context, uid, gid string) (inv store.GroupInvite, ok bool, err error) {
	invs, err := s.Invites(ctx, uid)
	if err != nil {
		return store.GroupInvite{}, false, err
	}
	for _, i := range invs {
		if i.GroupID != gid {
			continue
		}
		removed, err := s.st.DeleteInvite(ctx, uid, gid)
		if err != nil {
			return store.GroupInvite{}, false, s.internal(ctx, "delete invite", err)
		}
		return i, removed, nil // !removed: a concurrent take won
	}
	return store.GroupInvite{}, false, nil
}

// DeclineInvite drops uid's invitation into gid; CodeNotFound when none.
func (s *Service) DeclineInvite(ctx context.Context, uid, gid string) error {
	removed, err := s.st.DeleteInvite(ctx, uid, gid)
	if err != nil {
		return s.internal(ctx, "delete invite", err)
	}
	if !removed {
		return &chat.Error{Code: chat.CodeNotFound, Message: "no invitation to this group"}
	}
	return nil
}
