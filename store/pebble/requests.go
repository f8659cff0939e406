package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// A message request is "rq/{uid}\x00{chat}" → version, from, created_at.
const (
	prefixRequest = "rq/"
	requestV1     = 1
)

func (s *Store) PutRequest(ctx context.Context, r store.DirectRequest) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put request: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(r.UserID), checkKeyPart(r.Chat)); err != nil {
		return fmt.Errorf("pebble: put request: %w", err)
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(prefixRequest, r.UserID, r.Chat)
	switch ok, err := s.exists(key); {
	case err != nil:
		return fmt.Errorf("pebble: put request: %w", err)
	case ok:
		return nil
	}
	v := appendTime(appendString([]byte{requestV1}, r.From), r.CreatedAt)
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(key, v, nil); err != nil {
		return fmt.Errorf("pebble: put request: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return fmt.Errorf("pebble: put request: %w", err)
	}
	return nil
}

func (s *Store) DeleteRequest(ctx context.Context, uid, chat string) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, fmt.Errorf("pebble: delete request: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil || checkKeyPart(chat) != nil {
		return false, nil
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(prefixRequest, uid, chat)
	switch ok, err := s.exists(key); {
	case err != nil:
		return false, fmt.Errorf("pebble: delete request: %w", err)
	case !ok:
		return false, nil
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Delete(key, nil); err != nil {
		return false, fmt.Errorf("pebble: delete request: %w", err)
	}
	if err := commit(ctx, batch); err != nil {
		return false, fmt.Errorf("pebble: delete request: %w", err)
	}
	return true, nil
}

func (s *Store) RequestsOf(ctx context.Context, uid string) ([]store.DirectRequest, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: requests: %w", err)
	}
	defer s.mu.RUnlock()
	out := []store.DirectRequest{}
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(prefixRequest, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: requests of %q: %w", uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		chat, ok := pairSecond(it.Key(), prefixRequest, uid)
		if !ok {
			err = fmt.Errorf("bad request key %q: %w", it.Key(), errCorrupt)
			break
		}
		d := decoder{b: it.Value()}
		if d.byte() != requestV1 {
			err = fmt.Errorf("request %q: %w", chat, errCorrupt)
			break
		}
		r := store.DirectRequest{UserID: uid, Chat: chat, From: d.string(), CreatedAt: d.time()}
		if derr := d.finish(); derr != nil {
			err = fmt.Errorf("request %q: %w", chat, derr)
			break
		}
		out = append(out, r)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: requests of %q: %w", uid, err)
	}
	return out, nil
}
