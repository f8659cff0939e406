package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// A block is "bl/{uid}\x00{blocked}" → created_at: one range per user, in
// blocked id order, which is the order BlocksOf lists.
const (
	prefixBlock = "bl/"
	blockV1     = 1
)

func (s *Store) PutBlock(ctx context.Context, b store.Block) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put block: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(b.UserID), checkKeyPart(b.BlockedID)); err != nil {
		return fmt.Errorf("pebble: put block: %w", err)
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(prefixBlock, b.UserID, b.BlockedID)
	switch ok, err := s.exists(key); {
	case err != nil:
		return fmt.Errorf("pebble: put block: %w", err)
	case ok:
		return nil // the first block's time stands
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(key, appendTime([]byte{blockV1}, b.CreatedAt), nil); err != nil {
		return fmt.Errorf("pebble: put block: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return fmt.Errorf("pebble: put block: %w", err)
	}
	return nil
}

func (s *Store) DeleteBlock(ctx context.Context, uid, other string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: delete block: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil || checkKeyPart(other) != nil {
		return fmt.Errorf("pebble: delete block: %w", store.ErrNotFound)
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(prefixBlock, uid, other)
	switch ok, err := s.exists(key); {
	case err != nil:
		return fmt.Errorf("pebble: delete block: %w", err)
	case !ok:
		return fmt.Errorf("pebble: delete block: %w", store.ErrNotFound)
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Delete(key, nil); err != nil {
		return fmt.Errorf("pebble: delete block: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return fmt.Errorf("pebble: delete block: %w", err)
	}
	return nil
}

func (s *Store) BlocksOf(ctx context.Context, uid string) ([]store.Block, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: blocks: %w", err)
	}
	defer s.mu.RUnlock()
	out := []store.Block{}
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(prefixBlock, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: blocks of %q: %w", uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		other, ok := pairSecond(it.Key(), prefixBlock, uid)
		if !ok {
			err = fmt.Errorf("bad block key %q: %w", it.Key(), errCorrupt)
			break
		}
		d := decoder{b: it.Value()}
		if d.byte() != blockV1 {
			err = fmt.Errorf("block %q: %w", other, errCorrupt)
			break
		}
		b := store.Block{UserID: uid, BlockedID: other, CreatedAt: d.time()}
		if derr := d.finish(); derr != nil {
			err = fmt.Errorf("block %q: %w", other, derr)
			break
		}
		out = append(out, b)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: blocks of %q: %w", uid, err)
	}
	return out, nil
}

// Privacy settings are "pv/{uid}" → version, presence, request_push,
// updated_at.
const (
	prefixPrivacy = "pv/"
	privacyV1     = 1
)

func (s *Store) PutPrivacy(ctx context.Context, p store.Privacy) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put privacy: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkKeyPart(p.UserID); err != nil {
		return fmt.Errorf("pebble: put privacy: %w", err)
	}
	v := appendString([]byte{privacyV1}, p.Presence)
	v = append(v, boolByte(p.RequestPush))
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(append([]byte(prefixPrivacy), p.UserID...), appendTime(v, p.UpdatedAt), nil); err != nil {
		return fmt.Errorf("pebble: put privacy: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return fmt.Errorf("pebble: put privacy: %w", err)
	}
	return nil
}

func (s *Store) Privacy(ctx context.Context, uid string) (store.Privacy, error) {
	if err := s.begin(ctx); err != nil {
		return store.Privacy{}, fmt.Errorf("pebble: privacy: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil {
		return store.Privacy{}, fmt.Errorf("pebble: privacy: %w", store.ErrNotFound)
	}
	v, err := s.get(append([]byte(prefixPrivacy), uid...))
	if err != nil {
		return store.Privacy{}, fmt.Errorf("pebble: privacy of %q: %w", uid, err)
	}
	d := decoder{b: v}
	if d.byte() != privacyV1 {
		return store.Privacy{}, fmt.Errorf("pebble: privacy of %q: %w", uid, errCorrupt)
	}
	p := store.Privacy{UserID: uid, Presence: d.string(), RequestPush: d.byte() == 1, UpdatedAt: d.time()}
	if err := d.finish(); err != nil {
		return store.Privacy{}, fmt.Errorf("pebble: privacy of %q: %w", uid, err)
	}
	return p, nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
