package pebble

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// SetUserDisabled rewrites the user record under userMu, which every
// user-record write holds, so a concurrent delete cannot be undone by it.
func (s *Store) SetUserDisabled(ctx context.Context, uid string, disabled bool) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: set user disabled: %w", err)
	}
	defer s.mu.RUnlock()
	s.userMu.Lock()
	defer s.userMu.Unlock()
	u, err := s.liveUser(uid)
	if err != nil {
		return fmt.Errorf("pebble: set user disabled: %w", err)
	}
	if u.Disabled == disabled {
		return nil
	}
	u.Disabled = disabled
	if err := s.writeUser(ctx, u); err != nil {
		return fmt.Errorf("pebble: set user disabled: %w", err)
	}
	return nil
}

// writeUser replaces the record of an existing user whose username does
// not change (so its username index entry stands); the caller holds
// userMu.
func (s *Store) writeUser(ctx context.Context, u store.User) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(userIDKey(u.ID), encodeUser(&u), nil); err != nil {
		return err
	}
	return commit(ctx, b)
}

// DeleteUser writes the tombstone and removes the devices and their token
// index entries in one batch. It holds userMu and then devicesMu (the only
// place holding both, so no lock-order cycle) so no device registered
// meanwhile survives.
func (s *Store) DeleteUser(ctx context.Context, uid string, at time.Time) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	defer s.mu.RUnlock()
	s.userMu.Lock()
	defer s.userMu.Unlock()
	u, err := s.liveUser(uid)
	if err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	s.devicesMu.Lock()
	defer s.devicesMu.Unlock()

	b := s.db.NewBatch()
	defer b.Close()
	lower, upper := pairBounds(prefixDevice, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	for ok := it.First(); ok && err == nil; ok = it.Next() {
		id, ok := pairSecond(it.Key(), prefixDevice, uid)
		if !ok {
			err = fmt.Errorf("bad device key %q: %w", it.Key(), errCorrupt)
			break
		}
		var d store.Device
		if d, err = decodeDevice(uid, id, it.Value()); err != nil {
			break
		}
		err = b.Delete(it.Key(), nil)
		if err == nil && d.PushToken != "" {
			err = b.Delete(deviceTokenKey(d.PushToken), nil)
		}
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	// What only the account owner made goes with it: profile, privacy
	// settings, block list, pending requests and invitations, and its
	// devices' end-to-end keys and mailboxes (messages waiting for them).
	err = errors.Join(
		b.Delete(profileKey(uid), nil),
		b.Delete(append([]byte(prefixPrivacy), uid...), nil),
	)
	for _, prefix := range []string{prefixBlock, prefixRequest, prefixInvite,
		prefixDeviceKeys, prefixPrekey, prefixMailbox, prefixDeviceMsg} {
		lo, hi := pairBounds(prefix, uid)
		err = errors.Join(err, b.DeleteRange(lo, hi, nil))
	}
	if err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	u.PasswordHash = nil
	u.Disabled = false
	u.DeletedAt = at
	if err := b.Set(userIDKey(uid), encodeUser(&u), nil); err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: delete user: %w", err)
	}
	return nil
}

// ListUsers scans the u/id/ range, which is in id order.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]store.User, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("pebble: list users: limit must be positive, got %d", limit)
	}
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: list users: %w", err)
	}
	defer s.mu.RUnlock()
	lower := []byte(prefixUserID)
	if after != "" {
		// The smallest key after userIDKey(after).
		lower = append(userIDKey(after), 0)
	}
	upper := append([]byte(prefixUserID[:len(prefixUserID)-1]), prefixUserID[len(prefixUserID)-1]+1)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: list users: %w", err)
	}
	out := []store.User{}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		u, derr := decodeUser(it.Value())
		if derr != nil {
			err = fmt.Errorf("user %q: %w", it.Key(), derr)
			break
		}
		out = append(out, u)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: list users: %w", err)
	}
	return out, nil
}

// liveUser returns uid's record, ErrNotFound for an unknown or deleted one.
func (s *Store) liveUser(uid string) (store.User, error) {
	u, err := s.userByID(uid)
	if err != nil {
		return store.User{}, err
	}
	if u.Deleted() {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}
