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

type related map[[2]string]bool

func (r related) Related(_ context.Context, a, b string) (bool, error) {
	return r[[2]string{a, b}] || r[[2]string{b, a}], nil
}

// A new 1:1 chat between users who share nothing is a request for the
// recipient until they accept or reply: muted, presence and typing hidden
// both ways. Between related users it is none.
func TestRequests(t *testing.T) {
	s, _ := newService(t, Options{})
	ctx := t.Context()
	a, stranger, friend := ids.NewUserID(), ids.NewUserID(), ids.NewUserID()
	s.SetRelations(related{{a, friend}: true})
	req, plain := chat.DirectChatID(a, stranger), chat.DirectChatID(a, friend)
	if err := s.Opened(ctx, stranger, a, req); err != nil {
		t.Fatal(err)
	}
	if err := s.Opened(ctx, friend, a, plain); err != nil {
		t.Fatal(err)
	}
	type state struct{ pending, pendingOther, muted, hidden, hiddenBack, hears bool }
	check := func(step, chatID, other string, want state) {
		t.Helper()
		var got state
		var errs [6]error
		got.pending, errs[0] = s.Pending(ctx, a, chatID)
		got.pendingOther, errs[1] = s.Pending(ctx, other, chatID)
		got.muted, errs[2] = s.Muted(ctx, a, chatID)
		got.hidden, errs[3] = s.PresenceHidden(ctx, other, a)
		got.hiddenBack, errs[4] = s.PresenceHidden(ctx, a, other)
		got.hears, errs[5] = s.MayHearTyping(ctx, a, other, chatID)
		for _, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
		}
		if got != want {
			t.Fatalf("%s: %+v, want %+v", step, got, want)
		}
	}
	check("request", req, stranger, state{pending: true, muted: true, hidden: true, hiddenBack: true})
	check("related", plain, friend, state{hears: true})
	if err := s.Replied(ctx, stranger, req); err != nil { // the sender sending more accepts nothing
		t.Fatal(err)
	}
	check("sender sent again", req, stranger, state{pending: true, muted: true, hidden: true, hiddenBack: true})
	push := true
	if _, err := s.SetPrivacy(ctx, a, PrivacyChange{RequestPush: &push}); err != nil {
		t.Fatal(err)
	}
	check("request_push", req, stranger, state{pending: true, hidden: true, hiddenBack: true})
	if err := s.Replied(ctx, a, req); err != nil {
		t.Fatal(err)
	}
	check("replied", req, stranger, state{hears: true})
	if err := s.Accept(ctx, a, chat.DirectChatID(stranger, friend)); chat.CodeOf(err) != chat.CodeNotAuthorized {
		t.Fatalf("accepting someone else's chat: %v", err)
	}
	if err := s.Accept(ctx, a, chat.GroupChatID(ids.NewUserID())); chat.CodeOf(err) != chat.CodeNotAuthorized {
		t.Fatalf("accepting a group chat: %v", err)
	}
	if err := s.Accept(ctx, a, req); err != nil {
		t.Fatalf("accepting an accepted chat: %v", err)
	}
}
