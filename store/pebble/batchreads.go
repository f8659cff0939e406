package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/mqchat/mqchat/store"
)

// The batch reads are loops over point reads: an embedded store has no
// round trip to save, so the batch exists for the backends that do.

func (s *Store) UsersByID(ctx context.Context, ids []string) (map[string]store.User, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: users by id: %w", err)
	}
	defer s.mu.RUnlock()
	out := make(map[string]store.User, len(ids))
	for _, id := range ids {
		if checkKeyPart(id) != nil {
			continue
		}
		u, err := s.userByID(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("pebble: users by id: %w", err)
		default:
			out[id] = u
		}
	}
	return out, nil
}

func (s *Store) GroupsByID(ctx context.Context, ids []string) (map[string]store.Group, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: groups by id: %w", err)
	}
	defer s.mu.RUnlock()
	out := make(map[string]store.Group, len(ids))
	for _, id := range ids {
		g, err := s.group(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("pebble: groups by id: group %q: %w", id, err)
		default:
			out[id] = g
		}
	}
	return out, nil
}

func (s *Store) LastMessages(ctx context.Context, chats []string) (map[string]store.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pebble: last messages: %w", err)
	}
	out := make(map[string]store.Message, len(chats))
	for _, chat := range chats {
		last, err := s.history(ctx, chat, store.HistoryQuery{Limit: 1}, false)
		if err != nil {
			return nil, fmt.Errorf("pebble: last messages: %w", err)
		}
		if len(last) == 1 {
			out[chat] = last[0]
		}
	}
	return out, nil
}

func (s *Store) MembersOfGroups(ctx context.Context, groupIDs []string) (map[string][]store.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pebble: members of groups: %w", err)
	}
	out := make(map[string][]store.Member, len(groupIDs))
	for _, id := range groupIDs {
		ms, err := s.Members(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("pebble: members of groups: %w", err)
		}
		if len(ms) > 0 {
			out[id] = ms
		}
	}
	return out, nil
}
