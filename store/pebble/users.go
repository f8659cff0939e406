package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// CreateUser writes the user and its username index in one synced batch.
// userMu turns the two existence checks and the write into one step; that
// suffices because a pebble directory is locked to a single process.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: create user: %w", err)
	}
	defer s.mu.RUnlock()

	idKey, nameKey := userIDKey(u.ID), userNameKey(u.Username)
	s.userMu.Lock()
	defer s.userMu.Unlock()
	for _, k := range [][]byte{idKey, nameKey} {
		ok, err := s.exists(k)
		if err != nil {
			return fmt.Errorf("pebble: create user: %w", err)
		}
		if ok {
			return fmt.Errorf("pebble: create user %q: %w", u.Username, store.ErrConflict)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: create user: %w", err)
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(idKey, encodeUser(&u), nil); err != nil {
		return fmt.Errorf("pebble: create user: %w", err)
	}
	if err := b.Set(nameKey, []byte(u.ID), nil); err != nil {
		return fmt.Errorf("pebble: create user: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebble: create user: %w", err)
	}
	return nil
}

func (s *Store) UserByID(ctx context.Context, id string) (store.User, error) {
	if err := s.begin(ctx); err != nil {
		return store.User{}, fmt.Errorf("pebble: user by id: %w", err)
	}
	defer s.mu.RUnlock()
	u, err := s.userByID(id)
	if err != nil {
		return store.User{}, fmt.Errorf("pebble: user by id: %w", err)
	}
	return u, nil
}

func (s *Store) UserByUsername(ctx context.Context, username string) (store.User, error) {
	if err := s.begin(ctx); err != nil {
		return store.User{}, fmt.Errorf("pebble: user by username: %w", err)
	}
	defer s.mu.RUnlock()
	id, err := s.get(userNameKey(username))
	if err != nil {
		return store.User{}, fmt.Errorf("pebble: user by username: %w", err)
	}
	u, err := s.userByID(string(id))
	if err != nil {
		// Users are never deleted, so a dangling index entry is corruption,
		// not a race; report it rather than a plain not-found.
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("username index points at missing user %q: %w", id, errCorrupt)
		}
		return store.User{}, fmt.Errorf("pebble: user by username: %w", err)
	}
	return u, nil
}

func (s *Store) userByID(id string) (store.User, error) {
	v, err := s.get(userIDKey(id))
	if err != nil {
		return store.User{}, err
	}
	u, err := decodeUser(v)
	if err != nil {
		return store.User{}, fmt.Errorf("user %q: %w", id, err)
	}
	return u, nil
}

// get returns a copy of the value at k, or store.ErrNotFound.
func (s *Store) get(k []byte) ([]byte, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func (s *Store) exists(k []byte) (bool, error) {
	_, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}
