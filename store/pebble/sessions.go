package pebble

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// A session is "s/id/{sid}" → the encoded session, indexed per user as
// "s/u/{uid}\x00{sid}" → "" so a user's sessions are one range scan.
const (
	prefixSessionID   = "s/id/"
	prefixUserSession = "s/u/"
	sessionV1         = 1
)

func sessionKey(id string) []byte { return append([]byte(prefixSessionID), id...) }

func encodeSession(s *store.Session) []byte {
	b := make([]byte, 0, 1+len(s.ID)+len(s.UserID)+len(s.Label)+len(s.RefreshID)+40)
	b = append(b, sessionV1)
	b = appendString(b, s.ID)
	b = appendString(b, s.UserID)
	b = appendString(b, s.Label)
	b = appendString(b, s.RefreshID)
	b = appendTime(b, s.CreatedAt)
	b = appendTime(b, s.LastUsedAt)
	return appendTime(b, s.ExpiresAt)
}

func decodeSession(v []byte) (store.Session, error) {
	d := decoder{b: v}
	if d.byte() != sessionV1 {
		return store.Session{}, errCorrupt
	}
	s := store.Session{
		ID:         d.string(),
		UserID:     d.string(),
		Label:      d.string(),
		RefreshID:  d.string(),
		CreatedAt:  d.time(),
		LastUsedAt: d.time(),
		ExpiresAt:  d.time(),
	}
	return s, d.finish()
}

// CreateSession holds sessionMu so the existence check and the write are
// one step; every session write takes it, which is what makes
// RotateSession a compare-and-set.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: create session: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(sess.ID), checkKeyPart(sess.UserID)); err != nil {
		return fmt.Errorf("pebble: create session: %w", err)
	}
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	ok, err := s.exists(sessionKey(sess.ID))
	if err != nil {
		return fmt.Errorf("pebble: create session: %w", err)
	}
	if ok {
		return fmt.Errorf("pebble: create session %q: %w", sess.ID, store.ErrConflict)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := errors.Join(
		b.Set(sessionKey(sess.ID), encodeSession(&sess), nil),
		b.Set(pairKey(prefixUserSession, sess.UserID, sess.ID), nil, nil),
	); err != nil {
		return fmt.Errorf("pebble: create session: %w", err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: create session: %w", err)
	}
	return nil
}

func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	if err := s.begin(ctx); err != nil {
		return store.Session{}, fmt.Errorf("pebble: session: %w", err)
	}
	defer s.mu.RUnlock()
	sess, err := s.session(id)
	if err != nil {
		return store.Session{}, fmt.Errorf("pebble: session: %w", err)
	}
	return sess, nil
}

func (s *Store) session(id string) (store.Session, error) {
	v, err := s.get(sessionKey(id))
	if err != nil {
		return store.Session{}, err
	}
	sess, err := decodeSession(v)
	if err != nil {
		return store.Session{}, fmt.Errorf("session %q: %w", id, err)
	}
	return sess, nil
}

func (s *Store) RotateSession(ctx context.Context, id, from, to string, usedAt, expiresAt time.Time) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: rotate session: %w", err)
	}
	defer s.mu.RUnlock()
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	sess, err := s.session(id)
	if err != nil {
		return fmt.Errorf("pebble: rotate session: %w", err)
	}
	if sess.RefreshID != from {
		return fmt.Errorf("pebble: rotate session %q: %w", id, store.ErrConflict)
	}
	sess.RefreshID, sess.LastUsedAt, sess.ExpiresAt = to, usedAt, expiresAt
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(sessionKey(id), encodeSession(&sess), nil); err != nil {
		return fmt.Errorf("pebble: rotate session: %w", err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: rotate session: %w", err)
	}
	return nil
}

func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: delete session: %w", err)
	}
	defer s.mu.RUnlock()
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	sess, err := s.session(id)
	if err != nil {
		return fmt.Errorf("pebble: delete session: %w", err)
	}
	if err := s.deleteSessions(ctx, []store.Session{sess}); err != nil {
		return fmt.Errorf("pebble: delete session: %w", err)
	}
	return nil
}

func (s *Store) DeleteUserSessions(ctx context.Context, uid, keep string) ([]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: delete user sessions: %w", err)
	}
	defer s.mu.RUnlock()
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	all, err := s.userSessions(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("pebble: delete user sessions: %w", err)
	}
	gone := all[:0]
	for _, sess := range all {
		if sess.ID != keep {
			gone = append(gone, sess)
		}
	}
	if err := s.deleteSessions(ctx, gone); err != nil {
		return nil, fmt.Errorf("pebble: delete user sessions: %w", err)
	}
	ids := make([]string, len(gone))
	for i, sess := range gone {
		ids[i] = sess.ID
	}
	return ids, nil
}

// deleteSessions removes sessions and their index entries in one synced
// batch; the caller holds sessionMu.
func (s *Store) deleteSessions(ctx context.Context, sessions []store.Session) error {
	if len(sessions) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, sess := range sessions {
		if err := errors.Join(
			b.Delete(sessionKey(sess.ID), nil),
			b.Delete(pairKey(prefixUserSession, sess.UserID, sess.ID), nil),
		); err != nil {
			return err
		}
	}
	return commit(ctx, b)
}

func (s *Store) UserSessions(ctx context.Context, uid string) ([]store.Session, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: user sessions: %w", err)
	}
	defer s.mu.RUnlock()
	out, err := s.userSessions(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("pebble: user sessions: %w", err)
	}
	return out, nil
}

func (s *Store) userSessions(ctx context.Context, uid string) ([]store.Session, error) {
	out := []store.Session{}
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(prefixUserSession, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("sessions of %q: %w", uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		id, ok := pairSecond(it.Key(), prefixUserSession, uid)
		if !ok {
			err = fmt.Errorf("bad session index key %q: %w", it.Key(), errCorrupt)
			break
		}
		sess, serr := s.session(id)
		if serr != nil {
			err = fmt.Errorf("session %q of %q: %w", id, uid, serr)
			break
		}
		out = append(out, sess)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, err
	}
	return out, nil
}

// SetPasswordHash holds userMu, the lock of every user write.
func (s *Store) SetPasswordHash(ctx context.Context, uid string, hash []byte) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: set password: %w", err)
	}
	defer s.mu.RUnlock()
	s.userMu.Lock()
	defer s.userMu.Unlock()
	u, err := s.userByID(uid)
	if err != nil {
		return fmt.Errorf("pebble: set password: %w", err)
	}
	u.PasswordHash = hash
	if err := s.writeUser(ctx, u); err != nil {
		return fmt.Errorf("pebble: set password: %w", err)
	}
	return nil
}
