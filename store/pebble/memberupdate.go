package pebble

import (
	"context"
	"fmt"

	"github.com/mqchat/mqchat/store"
)

// UpdateMembers holds the group's stripe of s.groupLocks from the read to
// the commit; every other write of a group takes the same stripe, and one
// process owns the database, so the read is still true when the batch lands.
func (s *Store) UpdateMembers(ctx context.Context, groupID string, decide func([]store.Member) (store.MemberChange, error)) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: update members: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(groupID) != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, store.ErrNotFound)
	}

	mu := s.groupLocks.of(groupID)
	mu.Lock()
	defer mu.Unlock()
	ok, err := s.exists(groupKey(groupID))
	if err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	if !ok {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, store.ErrNotFound)
	}
	lower, upper := pairBounds(prefixGroupMember, groupID)
	current, err := s.scanMembers(ctx, lower, upper, 0, func(k []byte) (string, string, bool) {
		uid, ok := pairSecond(k, prefixGroupMember, groupID)
		return groupID, uid, ok
	})
	if err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	change, err := decide(current)
	if err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	if err := checkGroupWrite(groupID, change.Put); err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	for _, uid := range change.Remove {
		if err := checkKeyPart(uid); err != nil {
			return fmt.Errorf("pebble: update members of %q: user %q: %w", groupID, uid, err)
		}
	}
	if len(change.Put) == 0 && len(change.Remove) == 0 {
		return nil
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := setMembers(b, groupID, change.Put); err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	if err := deleteMembers(b, groupID, change.Remove); err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: update members of %q: %w", groupID, err)
	}
	return nil
}
