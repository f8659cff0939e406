package consent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store/pebble"
)

func newService(t *testing.T, opts Options) (*Service, *pebble.Store) {
	t.Helper()
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return New(st, opts), st
}

func TestBlockRefusals(t *testing.T) {
	s, _ := newService(t, Options{MaxBlocks: 1})
	me, other, third := ids.NewUserID(), ids.NewUserID(), ids.NewUserID()
	for _, tc := range []struct {
		name  string
		other string
		code  chat.Code
	}{
		{"self", me, chat.CodeInvalid},
		{"not an id", "bob", chat.CodeInvalid},
		{"empty", "", chat.CodeInvalid},
		{"first", other, ""},
		{"again", other, ""},
		{"past the limit", third, chat.CodeConflict},
	} {
		_, err := s.Block(t.Context(), me, tc.other)
		if got := chat.CodeOf(err); (tc.code == "" && err != nil) || (tc.code != "" && got != tc.code) {
			t.Errorf("%s: err = %v, want code %q", tc.name, err, tc.code)
		}
	}
	if err := s.Unblock(t.Context(), me, third); chat.CodeOf(err) != chat.CodeNotFound {
		t.Errorf("unblock of someone not blocked: %v", err)
	}
	if err := s.Unblock(t.Context(), me, "x"); chat.CodeOf(err) != chat.CodeNotFound {
		t.Errorf("unblock of a non-id: %v", err)
	}
}

// Blocked follows every change at once, though it answers from memory.
func TestBlockedFollowsChanges(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, _ := newService(t, Options{Now: func() time.Time { return now }})
	ctx := t.Context()
	a, b := ids.NewUserID(), ids.NewUserID()
	check := func(step string, ab, ba, either bool) {
		t.Helper()
		for _, q := range []struct {
			blocker, other string
			want           bool
		}{{a, b, ab}, {b, a, ba}} {
			if got, err := s.Blocked(ctx, q.blocker, q.other); err != nil || got != q.want {
				t.Fatalf("%s: Blocked(%s, %s) = %v, %v; want %v", step, q.blocker, q.other, got, err, q.want)
			}
		}
		if got, err := s.EitherBlocked(ctx, a, b); err != nil || got != either {
			t.Fatalf("%s: EitherBlocked = %v, %v; want %v", step, got, err, either)
		}
	}
	check("none", false, false, false) // caches both empty sets
	blk, err := s.Block(ctx, a, b)
	if err != nil || !blk.CreatedAt.Equal(now) {
		t.Fatalf("Block = %+v, %v", blk, err)
	}
	check("a blocks b", true, false, true)
	since, ok, err := s.BlockedSince(ctx, a, b)
	if err != nil || !ok || !since.Equal(now) {
		t.Fatalf("BlockedSince = %v %v %v, want %v", since, ok, err, now)
	}
	now = now.Add(time.Hour)
	if again, _ := s.Block(ctx, a, b); !again.CreatedAt.Equal(blk.CreatedAt) {
		t.Fatalf("a repeated block moved its time: %+v", again)
	}
	if _, err := s.Block(ctx, b, a); err != nil {
		t.Fatal(err)
	}
	check("both", true, true, true)
	if err := s.Unblock(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	check("b blocks a", false, true, true)
	list, err := s.List(ctx, b)
	if err != nil || len(list) != 1 || list[0].BlockedID != a {
		t.Fatalf("List(b) = %+v, %v", list, err)
	}
}

// Concurrent blocks by one user never pass MaxBlocks.
func TestConcurrentBlocksKeepTheLimit(t *testing.T) {
	const limit = 5
	s, st := newService(t, Options{MaxBlocks: limit})
	me := ids.NewUserID()
	var wg sync.WaitGroup
	for range 4 * limit {
		wg.Go(func() { _, _ = s.Block(context.Background(), me, ids.NewUserID()) })
	}
	wg.Wait()
	bs, err := st.BlocksOf(t.Context(), me)
	if err != nil || len(bs) != limit {
		t.Fatalf("%d blocks stored (%v), want %d", len(bs), err, limit)
	}
}

// A store failure is an internal error, not a "not blocked".
func TestStoreFailure(t *testing.T) {
	s, st := newService(t, Options{})
	_ = st.Close()
	_, err := s.Blocked(t.Context(), ids.NewUserID(), ids.NewUserID())
	var ce *chat.Error
	if !errors.As(err, &ce) || ce.Code != chat.CodeInternal {
		t.Fatalf("Blocked on a closed store = %v, want an internal error", err)
	}
}
