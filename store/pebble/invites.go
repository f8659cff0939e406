package pebble

import (
	"context"

	"github.com/mqchat/mqchat/store"
)

// A group invitation is "gi/{uid}\x00{group}" → version, from, created_at
// (an offer, see offers.go).
const prefixInvite = "gi/"

func (s *Store) PutInvite(ctx context.Context, r store.GroupInvite) error {
	return s.putOffer(ctx, inviteOffers, r.UserID, offer{subject: r.GroupID, from: r.From, createdAt: r.CreatedAt})
}

func (s *Store) DeleteInvite(ctx context.Context, uid, gid string) (bool, error) {
	return s.deleteOffer(ctx, inviteOffers, uid, gid)
}

func (s *Store) InvitesOf(ctx context.Context, uid string) ([]store.GroupInvite, error) {
	os, err := s.offersOf(ctx, inviteOffers, uid)
	if err != nil {
		return nil, err
	}
	out := make([]store.GroupInvite, len(os))
	for i, o := range os {
		out[i] = store.GroupInvite{UserID: uid, GroupID: o.subject, From: o.from, CreatedAt: o.createdAt}
	}
	return out, nil
}
