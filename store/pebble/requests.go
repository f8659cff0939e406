package pebble

import (
	"context"

	"github.com/mqchat/mqchat/store"
)

// A message request is "rq/{uid}\x00{chat}" → version, from, created_at
// (an offer, see offers.go).
const prefixRequest = "rq/"

func (s *Store) PutRequest(ctx context.Context, r store.DirectRequest) error {
	return s.putOffer(ctx, requestOffers, r.UserID, offer{subject: r.Chat, from: r.From, createdAt: r.CreatedAt})
}

func (s *Store) DeleteRequest(ctx context.Context, uid, chat string) (bool, error) {
	return s.deleteOffer(ctx, requestOffers, uid, chat)
}

func (s *Store) RequestsOf(ctx context.Context, uid string) ([]store.DirectRequest, error) {
	os, err := s.offersOf(ctx, requestOffers, uid)
	if err != nil {
		return nil, err
	}
	out := make([]store.DirectRequest, len(os))
	for i, o := range os {
		out[i] = store.DirectRequest{UserID: uid, Chat: o.subject, From: o.from, CreatedAt: o.createdAt}
	}
	return out, nil
}
