package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// A group invitation is "gi/{uid}\x00{group}" → version, from, created_at.
const (
	prefixInvite = "gi/"
	inviteV1     = 1
)

func (s *Store) PutInvite(ctx context.Context, r store.GroupInvite) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put invite: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(r.UserID), checkKeyPart(r.GroupID)); err != nil {
		return fmt.Errorf("pebble: put invite: %w", err)
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(prefixInvite, r.UserID, r.GroupID)
	switch ok, err := s.exists(key); {
	case err != nil:
		return fmt.Errorf("pebble: put invite: %w", err)
	case ok:
		return nil
	}
	v := appendTime(appendString([]byte{inviteV1}, r.From), r.CreatedAt)
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(key, v, nil); err != nil {
		return fmt.Errorf("pebble: put invite: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return fmt.Errorf("pebble: put invite: %w", err)
	}
	return nil
}

func (s *Store) DeleteInvite(ctx context.Context, uid, gid string) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, fmt.Errorf("pebble: delete invite: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil || checkKeyPart(gid) != nil {
		return false, nil
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(prefixInvite, uid, gid)
	switch ok, err := s.exists(key); {
	case err != nil:
		return false, fmt.Errorf("pebble: delete invite: %w", err)
	case !ok:
		return false, nil
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Delete(key, nil); err != nil {
		return false, fmt.Errorf("pebble: delete invite: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return false, fmt.Errorf("pebble: delete invite: %w", err)
	}
	return true, nil
}

func (s *Store) InvitesOf(ctx context.Context, uid string) ([]store.GroupInvite, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: invites: %w", err)
	}
	defer s.mu.RUnlock()
	out := []store.GroupInvite{}
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(prefixInvite, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: invites of %q: %w", uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		gid, ok := pairSecond(it.Key(), prefixInvite, uid)
		if !ok {
			err = fmt.Errorf("bad invite key %q: %w", it.Key(), errCorrupt)
			break
		}
		d := decoder{b: it.Value()}
		if d.byte() != inviteV1 {
			err = fmt.Errorf("invite %q: %w", gid, errCorrupt)
			break
		}
		r := store.GroupInvite{UserID: uid, GroupID: gid, From: d.string(), CreatedAt: d.time()}
		if derr := d.finish(); derr != nil {
			err = fmt.Errorf("invite %q: %w", gid, derr)
			break
		}
		out = append(out, r)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: invites of %q: %w", uid, err)
	}
	return out, nil
}
