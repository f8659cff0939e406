package groups

import (
	"context"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Consent screens who may be put in a group by whom (services/consent):
// someone who blocks the actor is left out without the actor being told,
// someone the actor shares no accepted chat with is invited and joins only
// on accepting (limits.group_invites: consent).
type Consent interface {
	Screen(ctx context.Context, actor string, uids []string) (direct, invite []string, err error)
	Invite(ctx context.Context, actor, gid string, uids []string) error
	TakeInvite(ctx context.Context, uid, gid string) (store.GroupInvite, bool, error)
	DeclineInvite(ctx context.Context, uid, gid string) error
}

func noInvite() error {
	return &chat.Error{Code: chat.CodeNotFound, Message: "no invitation to this group"}
}

// DeclineInvite drops uid's invitation into gid; CodeNotFound when none.
func (s *Service) DeclineInvite(ctx context.Context, uid, gid string) error {
	if s.opts.Consent == nil {
		return noInvite()
	}
	return s.opts.Consent.DeclineInvite(ctx, uid, gid)
}

func (s *Service) screen(ctx context.Context, actor string, uids []string) (direct, invite []string, err error) {
	if s.opts.Consent == nil || len(uids) == 0 {
		return uids, nil, nil
	}
	return s.opts.Consent.Screen(ctx, actor, uids)
}

// invite records invitations into g and tells the invitees' devices.
func (s *Service) invite(ctx context.Context, actor string, g store.Group, uids []string) error {
	if len(uids) == 0 {
		return nil
	}
	if err := s.opts.Consent.Invite(ctx, actor, g.ID, uids); err != nil {
		return err
	}
	s.announce(uids, Event{Op: "invited", GroupID: g.ID, By: actor, Name: g.Name})
	return nil
}

// AcceptInvite makes uid a member of gid as invited; CodeNotFound when uid
// has no invitation to gid or the group is gone.
func (s *Service) AcceptInvite(ctx context.Context, uid, gid string) (View, error) {
	if s.opts.Consent == nil {
		return View{}, noInvite()
	}
	inv, ok, err := s.opts.Consent.TakeInvite(ctx, uid, gid)
	if err != nil {
		return View{}, err
	}
	if !ok {
		return View{}, noInvite()
	}
	g, err := s.st.Group(ctx, gid)
	if err != nil {
		return View{}, s.storeErr(ctx, gid, "group", err)
	}
	// The invitee joins under the limit as written; already a member, it
	// is left as it is.
	return s.addMembers(ctx, inv.From, g, []string{uid}, nil)
}
