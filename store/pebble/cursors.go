package pebble

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// Every write of a chat-list entry reads the entry, merges and writes it
// back under the user's stripe of s.cursorLocks, so two AdvanceCursors, or
// an AdvanceCursors and a JoinChat, never lose each other's update.

// JoinChat creates the entry with zero cursors, or clears Left on an
// existing one and keeps its cursors; either way UpdatedAt becomes at.
func (s *Store) JoinChat(ctx context.Context, uid, chat string, at time.Time) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: join chat: %w", err)
	}
	defer s.mu.RUnlock()
	_, _, err := s.updateChatState(ctx, uid, chat, func(st *store.ChatState, found bool) (bool, error) {
		return store.JoinState(st, found, at)
	})
	if err != nil {
		return fmt.Errorf("pebble: join chat %q for %q: %w", chat, uid, err)
	}
	return nil
}

// LeaveChat sets Left and UpdatedAt, keeping the cursors.
func (s *Store) LeaveChat(ctx context.Context, uid, chat string, at time.Time) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: leave chat: %w", err)
	}
	defer s.mu.RUnlock()
	_, _, err := s.updateChatState(ctx, uid, chat, func(st *store.ChatState, found bool) (bool, error) {
		return store.LeaveState(st, found, at)
	})
	if err != nil {
		return fmt.Errorf("pebble: leave chat %q for %q: %w", chat, uid, err)
	}
	return nil
}

// AdvanceCursors max-merges the cursors and writes only when one moved.
func (s *Store) AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (store.ChatState, bool, error) {
	if err := s.begin(ctx); err != nil {
		return store.ChatState{}, false, fmt.Errorf("pebble: advance cursors: %w", err)
	}
	defer s.mu.RUnlock()
	st, changed, err := s.updateChatState(ctx, uid, chat, func(st *store.ChatState, found bool) (bool, error) {
		return store.AdvanceState(st, found, delivered, read, at)
	})
	if err != nil {
		return store.ChatState{}, false, fmt.Errorf("pebble: advance cursors of %q for %q: %w", chat, uid, err)
	}
	return st, changed, nil
}

// updateChatState reads the entry (a zero state with found false when it is
// absent), lets apply change it, and writes it back when apply reports a
// change; it returns the resulting state. The caller holds s.mu shared.
//
// Cursor writes are not fsynced (see store.Cursors): they reach the WAL in
// order and become durable with the next synced write, which is at the
// latest the next stored message. A chat joined just before its first
// message is therefore durable whenever that message is.
func (s *Store) updateChatState(ctx context.Context, uid, chat string,
	apply func(st *store.ChatState, found bool) (bool, error)) (store.ChatState, bool, error) {
	if err := checkKeyPart(uid); err != nil {
		return store.ChatState{}, false, fmt.Errorf("user: %w", err)
	}
	if err := checkKeyPart(chat); err != nil {
		return store.ChatState{}, false, fmt.Errorf("chat: %w", err)
	}
	k := pairKey(prefixCursor, uid, chat)
	mu := s.cursorLocks.of(uid)
	mu.Lock()
	defer mu.Unlock()

	st := store.ChatState{UserID: uid, Chat: chat}
	found := true
	v, err := s.get(k)
	switch {
	case errors.Is(err, store.ErrNotFound):
		found = false
	case err != nil:
		return store.ChatState{}, false, err
	default:
		if st, err = decodeChatState(uid, chat, v); err != nil {
			return store.ChatState{}, false, err
		}
	}
	changed, err := apply(&st, found)
	if err != nil || !changed {
		return st, false, err
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(k, encodeChatState(&st), nil); err != nil {
		return store.ChatState{}, false, err
	}
	if err := commitLazy(ctx, b); err != nil {
		return store.ChatState{}, false, err
	}
	return st, true, nil
}

func (s *Store) ChatState(ctx context.Context, uid, chat string) (store.ChatState, error) {
	if err := s.begin(ctx); err != nil {
		return store.ChatState{}, fmt.Errorf("pebble: chat state: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil || checkKeyPart(chat) != nil {
		return store.ChatState{}, fmt.Errorf("pebble: chat state %q for %q: %w", chat, uid, store.ErrNotFound)
	}
	v, err := s.get(pairKey(prefixCursor, uid, chat))
	if err != nil {
		return store.ChatState{}, fmt.Errorf("pebble: chat state %q for %q: %w", chat, uid, err)
	}
	st, err := decodeChatState(uid, chat, v)
	if err != nil {
		return store.ChatState{}, fmt.Errorf("pebble: chat state %q for %q: %w", chat, uid, err)
	}
	return st, nil
}

// ChatStates scans uid's c/ range, which is in chat id order.
func (s *Store) ChatStates(ctx context.Context, uid string) ([]store.ChatState, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: chat states: %w", err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil {
		return []store.ChatState{}, nil
	}
	lower, upper := pairBounds(prefixCursor, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: chat states of %q: %w", uid, err)
	}
	out := []store.ChatState{}
	for ok := it.First(); ok; ok = it.Next() {
		chat, ok := pairSecond(it.Key(), prefixCursor, uid)
		if !ok {
			err = fmt.Errorf("bad chat state key %q: %w", it.Key(), errCorrupt)
			break
		}
		st, derr := decodeChatState(uid, chat, it.Value())
		if derr != nil {
			err = fmt.Errorf("chat state %q: %w", chat, derr)
			break
		}
		out = append(out, st)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: chat states of %q: %w", uid, err)
	}
	return out, nil
}
