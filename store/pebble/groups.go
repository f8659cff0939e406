package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// errMemberGroup rejects a Member whose GroupID names another group than the
// one being written; an empty GroupID means "this group".
var errMemberGroup = errors.New("member belongs to another group")

// Every write of a group (its g/ key and both membership indexes) happens
// under the group's stripe of s.groupLocks, so an existence check and the
// batch that depends on it are one step: a PutMembers cannot slip in between
// DeleteGroup's scan and its commit and leave memberships of a dead group.

// CreateGroup writes the group and both index entries of every member in
// one synced batch.
func (s *Store) CreateGroup(ctx context.Context, g store.Group, members []store.Member) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: create group: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkGroupWrite(g.ID, members); err != nil {
		return fmt.Errorf("pebble: create group %q: %w", g.ID, err)
	}

	gk := groupKey(g.ID)
	mu := s.groupLocks.of(g.ID)
	mu.Lock()
	defer mu.Unlock()
	ok, err := s.exists(gk)
	if err != nil {
		return fmt.Errorf("pebble: create group %q: %w", g.ID, err)
	}
	if ok {
		return fmt.Errorf("pebble: create group %q: %w", g.ID, store.ErrConflict)
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(gk, encodeGroup(&g), nil); err != nil {
		return fmt.Errorf("pebble: create group %q: %w", g.ID, err)
	}
	if err := setMembers(b, g.ID, members); err != nil {
		return fmt.Errorf("pebble: create group %q: %w", g.ID, err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: create group %q: %w", g.ID, err)
	}
	return nil
}

func (s *Store) Group(ctx context.Context, id string) (store.Group, error) {
	if err := s.begin(ctx); err != nil {
		return store.Group{}, fmt.Errorf("pebble: group: %w", err)
	}
	defer s.mu.RUnlock()
	g, err := s.group(id)
	if err != nil {
		return store.Group{}, fmt.Errorf("pebble: group %q: %w", id, err)
	}
	return g, nil
}

// group reads one group; an id with sep cannot have been stored.
func (s *Store) group(id string) (store.Group, error) {
	if checkKeyPart(id) != nil {
		return store.Group{}, store.ErrNotFound
	}
	v, err := s.get(groupKey(id))
	if err != nil {
		return store.Group{}, err
	}
	return decodeGroup(id, v)
}

func (s *Store) RenameGroup(ctx context.Context, id, name string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: rename group: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkKeyPart(id); err != nil {
		return fmt.Errorf("pebble: rename group %q: %w", id, err)
	}

	mu := s.groupLocks.of(id)
	mu.Lock()
	defer mu.Unlock()
	g, err := s.group(id)
	if err != nil {
		return fmt.Errorf("pebble: rename group %q: %w", id, err)
	}
	g.Name = name
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(groupKey(id), encodeGroup(&g), nil); err != nil {
		return fmt.Errorf("pebble: rename group %q: %w", id, err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: rename group %q: %w", id, err)
	}
	return nil
}

// DeleteGroup deletes the group key, its gm/ range and the matching ug/ key
// of every member in one synced batch.
func (s *Store) DeleteGroup(ctx context.Context, id string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: delete group: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkKeyPart(id); err != nil {
		return fmt.Errorf("pebble: delete group %q: %w", id, err)
	}

	gk := groupKey(id)
	mu := s.groupLocks.of(id)
	mu.Lock()
	defer mu.Unlock()
	ok, err := s.exists(gk)
	if err != nil {
		return fmt.Errorf("pebble: delete group %q: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("pebble: delete group %q: %w", id, store.ErrNotFound)
	}
	uids, err := s.memberIDs(ctx, id)
	if err != nil {
		return fmt.Errorf("pebble: delete group %q: %w", id, err)
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(gk, nil); err != nil {
		return fmt.Errorf("pebble: delete group %q: %w", id, err)
	}
	if err := deleteMembers(b, id, uids); err != nil {
		return fmt.Errorf("pebble: delete group %q: %w", id, err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: delete group %q: %w", id, err)
	}
	return nil
}

// memberIDs lists the user ids of the gm/ range of groupID.
func (s *Store) memberIDs(ctx context.Context, groupID string) ([]string, error) {
	lower, upper := pairBounds(prefixGroupMember, groupID)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var uids []string
	for ok := it.First(); ok; ok = it.Next() {
		uid, ok := pairSecond(it.Key(), prefixGroupMember, groupID)
		if !ok {
			err = fmt.Errorf("bad membership key %q: %w", it.Key(), errCorrupt)
			break
		}
		uids = append(uids, uid)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, err
	}
	return uids, nil
}

// PutMembers writes both index entries of every member in one synced batch,
// replacing existing ones.
func (s *Store) PutMembers(ctx context.Context, groupID string, members []store.Member) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put members: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkGroupWrite(groupID, members); err != nil {
		return fmt.Errorf("pebble: put members of %q: %w", groupID, err)
	}

	mu := s.groupLocks.of(groupID)
	mu.Lock()
	defer mu.Unlock()
	ok, err := s.exists(groupKey(groupID))
	if err != nil {
		return fmt.Errorf("pebble: put members of %q: %w", groupID, err)
	}
	if !ok {
		return fmt.Errorf("pebble: put members of %q: %w", groupID, store.ErrNotFound)
	}
	if len(members) == 0 {
		return nil
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := setMembers(b, groupID, members); err != nil {
		return fmt.Errorf("pebble: put members of %q: %w", groupID, err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: put members of %q: %w", groupID, err)
	}
	return nil
}

// RemoveMembers deletes both index entries of every uid in one synced batch.
// Deleting an absent key is a no-op, so non-members need no lookup; an
// unknown group has no members and is therefore not an error.
func (s *Store) RemoveMembers(ctx context.Context, groupID string, userIDs []string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: remove members: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkKeyPart(groupID); err != nil {
		return fmt.Errorf("pebble: remove members of %q: %w", groupID, err)
	}
	for _, uid := range userIDs {
		if err := checkKeyPart(uid); err != nil {
			return fmt.Errorf("pebble: remove members of %q: user %q: %w", groupID, uid, err)
		}
	}
	if len(userIDs) == 0 {
		return nil
	}

	mu := s.groupLocks.of(groupID)
	mu.Lock()
	defer mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := deleteMembers(b, groupID, userIDs); err != nil {
		return fmt.Errorf("pebble: remove members of %q: %w", groupID, err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: remove members of %q: %w", groupID, err)
	}
	return nil
}

func (s *Store) Member(ctx context.Context, groupID, uid string) (store.Member, error) {
	if err := s.begin(ctx); err != nil {
		return store.Member{}, fmt.Errorf("pebble: member: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(groupID) != nil || checkKeyPart(uid) != nil {
		return store.Member{}, fmt.Errorf("pebble: member %q of %q: %w", uid, groupID, store.ErrNotFound)
	}
	v, err := s.get(pairKey(prefixGroupMember, groupID, uid))
	if err != nil {
		return store.Member{}, fmt.Errorf("pebble: member %q of %q: %w", uid, groupID, err)
	}
	m, err := decodeMember(groupID, uid, v)
	if err != nil {
		return store.Member{}, fmt.Errorf("pebble: member %q of %q: %w", uid, groupID, err)
	}
	return m, nil
}

// Members scans the group's gm/ range, which is in user id order.
func (s *Store) Members(ctx context.Context, groupID string) ([]store.Member, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: members: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(groupID) != nil {
		return []store.Member{}, nil
	}
	lower, upper := pairBounds(prefixGroupMember, groupID)
	out, err := s.scanMembers(ctx, lower, upper, 0, func(k []byte) (string, string, bool) {
		uid, ok := pairSecond(k, prefixGroupMember, groupID)
		return groupID, uid, ok
	})
	if err != nil {
		return nil, fmt.Errorf("pebble: members of %q: %w", groupID, err)
	}
	return out, nil
}

// GroupsOf scans uid's ug/ range, which is in group id order, from just past
// the key of after.
func (s *Store) GroupsOf(ctx context.Context, uid, after string, limit int) ([]store.Member, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: groups of: %w", err)
	}
	defer s.mu.RUnlock()
	if limit <= 0 {
		return nil, fmt.Errorf("pebble: groups of %q: limit %d, want > 0", uid, limit)
	}
	if checkKeyPart(uid) != nil {
		return []store.Member{}, nil
	}
	lower, upper := pairBounds(prefixUserGroup, uid)
	if after != "" {
		// The smallest key greater than the one of after.
		lower = append(pairKey(prefixUserGroup, uid, after), 0)
	}
	out, err := s.scanMembers(ctx, lower, upper, limit, func(k []byte) (string, string, bool) {
		groupID, ok := pairSecond(k, prefixUserGroup, uid)
		return groupID, uid, ok
	})
	if err != nil {
		return nil, fmt.Errorf("pebble: groups of %q: %w", uid, err)
	}
	return out, nil
}

// scanMembers decodes the membership entries of [lower, upper), at most limit
// of them (0 = all); ids recovers (group id, user id) from a key.
func (s *Store) scanMembers(ctx context.Context, lower, upper []byte, limit int,
	ids func(k []byte) (groupID, uid string, ok bool)) ([]store.Member, error) {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	// limit is caller input; do not let it size the allocation.
	out := make([]store.Member, 0, min(max(limit, 16), 256))
	for ok := it.First(); ok; ok = it.Next() {
		groupID, uid, ok := ids(it.Key())
		if !ok {
			err = fmt.Errorf("bad membership key %q: %w", it.Key(), errCorrupt)
			break
		}
		m, derr := decodeMember(groupID, uid, it.Value())
		if derr != nil {
			err = fmt.Errorf("membership %q: %w", it.Key(), derr)
			break
		}
		out = append(out, m)
		if len(out) == limit {
			break
		}
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, err
	}
	return out, nil
}

// checkGroupWrite validates the keys a CreateGroup or PutMembers would write
// before any of them is.
func checkGroupWrite(groupID string, members []store.Member) error {
	if err := checkKeyPart(groupID); err != nil {
		return err
	}
	for i := range members {
		m := &members[i]
		if err := checkKeyPart(m.UserID); err != nil {
			return fmt.Errorf("user %q: %w", m.UserID, err)
		}
		if m.GroupID != "" && m.GroupID != groupID {
			return fmt.Errorf("user %q in group %q: %w", m.UserID, m.GroupID, errMemberGroup)
		}
	}
	return nil
}

// setMembers adds both index entries of every member to b; a user listed
// twice ends with the later entry, as the batch applies in order.
func setMembers(b *pebble.Batch, groupID string, members []store.Member) error {
	var val []byte // reused: Batch.Set copies
	for i := range members {
		m := &members[i]
		val = encodeMember(val[:0], m)
		if err := b.Set(pairKey(prefixGroupMember, groupID, m.UserID), val, nil); err != nil {
			return err
		}
		if err := b.Set(pairKey(prefixUserGroup, m.UserID, groupID), val, nil); err != nil {
			return err
		}
	}
	return nil
}

func deleteMembers(b *pebble.Batch, groupID string, uids []string) error {
	for _, uid := range uids {
		if err := b.Delete(pairKey(prefixGroupMember, groupID, uid), nil); err != nil {
			return err
		}
		if err := b.Delete(pairKey(prefixUserGroup, uid, groupID), nil); err != nil {
			return err
		}
	}
	return nil
}
