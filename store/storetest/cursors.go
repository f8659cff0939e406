package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func cursorTests() []testCase {
	return append([]testCase{
		{"JoinStartsAtZero", testJoinStartsAtZero},
		{"AdvanceIsMaxMerge", testAdvanceMaxMerge},
		{"NeverJoined", testCursorsNeverJoined},
		{"LeaveAndRejoin", testLeaveRejoin},
		{"JoinIsIdempotent", testJoinIdempotent},
		{"ChatStatesOrderedPerUser", testChatStatesOrdered},
		{"ConcurrentAdvance", testConcurrentAdvance},
	}, cursorContextTests()...)
}

var cursorBase = time.Date(2025, 4, 1, 8, 0, 0, 0, time.UTC)

// at is cursorBase plus n seconds.
func at(n int) time.Time { return cursorBase.Add(time.Duration(n) * time.Second) }

func mustJoin(t *testing.T, s store.Store, uid, chat string, when time.Time) {
	t.Helper()
	if err := s.JoinChat(t.Context(), uid, chat, when); err != nil {
		t.Fatalf("JoinChat(%q, %q): %v", uid, chat, err)
	}
}

func mustAdvance(t *testing.T, s store.Store, uid, chat string, delivered, read uint64, when time.Time) (store.ChatState, bool) {
	t.Helper()
	st, changed, err := s.AdvanceCursors(t.Context(), uid, chat, delivered, read, when)
	if err != nil {
		t.Fatalf("AdvanceCursors(%q, %q, %d, %d): %v", uid, chat, delivered, read, err)
	}
	return st, changed
}

func stateDiff(got, want store.ChatState) string {
	if got.UserID != want.UserID || got.Chat != want.Chat || got.DeliveredSeq != want.DeliveredSeq ||
		got.ReadSeq != want.ReadSeq || got.Left != want.Left || !sameInstant(got.UpdatedAt, want.UpdatedAt) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}

func checkState(t *testing.T, s store.Store, want store.ChatState) {
	t.Helper()
	got, err := s.ChatState(t.Context(), want.UserID, want.Chat)
	if err != nil {
		t.Fatalf("ChatState(%q, %q): %v", want.UserID, want.Chat, err)
	}
	if d := stateDiff(got, want); d != "" {
		t.Fatalf("ChatState(%q, %q): %s", want.UserID, want.Chat, d)
	}
}

func checkNoState(t *testing.T, s store.Store, uid, chat string) {
	t.Helper()
	if got, err := s.ChatState(t.Context(), uid, chat); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ChatState(%q, %q) = %+v, %v; want ErrNotFound", uid, chat, got, err)
	}
}

func checkStates(t *testing.T, s store.Store, uid string, want ...store.ChatState) {
	t.Helper()
	got, err := s.ChatStates(t.Context(), uid)
	if err != nil {
		t.Fatalf("ChatStates(%q): %v", uid, err)
	}
	if len(got) != len(want) {
		t.Fatalf("ChatStates(%q): got chats %q, want %q", uid, chats(got), chats(want))
	}
	for i := range want {
		if d := stateDiff(got[i], want[i]); d != "" {
			t.Fatalf("ChatStates(%q) entry %d: %s", uid, i, d)
		}
	}
}

func chats(states []store.ChatState) []string {
	out := make([]string, len(states))
	for i, st := range states {
		out[i] = st.Chat
	}
	return out
}

func testJoinStartsAtZero(t *testing.T, s store.Store) {
	mustJoin(t, s, "alice", "dm:alice:bob", at(1))
	want := store.ChatState{UserID: "alice", Chat: "dm:alice:bob", UpdatedAt: at(1)}
	checkState(t, s, want)
	checkStates(t, s, "alice", want)
	// Joining is per user: bob has no entry for the same chat.
	checkNoState(t, s, "bob", "dm:alice:bob")
	checkStates(t, s, "bob")

	// UpdatedAt keeps the caller's time at ms precision, whatever its zone.
	when := time.Date(2025, 4, 1, 9, 30, 0, 123_456_789, time.FixedZone("W", 9*3600))
	mustJoin(t, s, "alice", "g:ü", when)
	checkState(t, s, store.ChatState{UserID: "alice", Chat: "g:ü", UpdatedAt: when})
}

func testAdvanceMaxMerge(t *testing.T, s store.Store) {
	const uid, chat = "alice", "g:adv"
	mustJoin(t, s, uid, chat, at(0))
	want := store.ChatState{UserID: uid, Chat: chat, UpdatedAt: at(0)}
	steps := []struct {
		name            string
		delivered, read uint64
		wantD, wantR    uint64
		changed         bool
	}{
		{"delivered only", 5, 0, 5, 0, true},
		{"read only", 0, 3, 5, 3, true},
		{"both lower", 4, 2, 5, 3, false},
		{"both equal", 5, 3, 5, 3, false},
		{"zeros", 0, 0, 5, 3, false},
		{"delivered lower, read higher", 1, 4, 5, 4, true},
		{"delivered higher, read lower", 9, 1, 9, 4, true},
		{"both higher", 12, 10, 12, 10, true},
		{"read past delivered", 0, 20, 12, 20, true},
		{"huge", 1 << 62, 1 << 62, 1 << 62, 1 << 62, true},
		{"back to small", 7, 7, 1 << 62, 1 << 62, false},
	}
	for i, st := range steps {
		when := at(i + 1)
		got, changed := mustAdvance(t, s, uid, chat, st.delivered, st.read, when)
		want.DeliveredSeq, want.ReadSeq = st.wantD, st.wantR
		if st.changed {
			want.UpdatedAt = when // UpdatedAt moves only with a cursor
		}
		if changed != st.changed {
			t.Fatalf("step %q: changed = %v, want %v", st.name, changed, st.changed)
		}
		if d := stateDiff(got, want); d != "" {
			t.Fatalf("step %q: returned state: %s", st.name, d)
		}
		checkState(t, s, want)
	}
	checkStates(t, s, uid, want)
}

func testCursorsNeverJoined(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Neighbours: the same chat for another user, other chats for this one,
	// ids that share prefixes with the missing entry.
	mustJoin(t, s, "bob", "g:1", at(0))
	mustJoin(t, s, "alice", "g:10", at(0))
	mustJoin(t, s, "alice1", "g:1", at(0))
	for _, seed := range []bool{false, true} {
		if seed {
			mustAdvance(t, s, "bob", "g:1", 3, 3, at(1))
		}
		if _, _, err := s.AdvanceCursors(ctx, "alice", "g:1", 5, 5, at(2)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AdvanceCursors on a never-joined chat: err = %v, want ErrNotFound", err)
		}
		if err := s.LeaveChat(ctx, "alice", "g:1", at(2)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("LeaveChat on a never-joined chat: err = %v, want ErrNotFound", err)
		}
		checkNoState(t, s, "alice", "g:1")
		checkNoState(t, s, "alice", "g:")
		checkNoState(t, s, "alic", "g:1")
		// The failed calls created nothing.
		checkStates(t, s, "alice", store.ChatState{UserID: "alice", Chat: "g:10", UpdatedAt: at(0)})
	}
	checkState(t, s, store.ChatState{UserID: "bob", Chat: "g:1", DeliveredSeq: 3, ReadSeq: 3, UpdatedAt: at(1)})
}

func testLeaveRejoin(t *testing.T, s store.Store) {
	ctx := t.Context()
	const uid, chat = "alice", "g:leave"
	mustJoin(t, s, uid, chat, at(0))
	mustAdvance(t, s, uid, chat, 10, 8, at(1))

	if err := s.LeaveChat(ctx, uid, chat, at(2)); err != nil {
		t.Fatalf("LeaveChat: %v", err)
	}
	left := store.ChatState{UserID: uid, Chat: chat, DeliveredSeq: 10, ReadSeq: 8, Left: true, UpdatedAt: at(2)}
	checkState(t, s, left)
	checkStates(t, s, uid, left) // left entries stay listed

	mustJoin(t, s, uid, chat, at(3))
	back := store.ChatState{UserID: uid, Chat: chat, DeliveredSeq: 10, ReadSeq: 8, UpdatedAt: at(3)}
	checkState(t, s, back)
	checkStates(t, s, uid, back)

	// And the cursors keep working after the round trip.
	got, changed := mustAdvance(t, s, uid, chat, 11, 0, at(4))
	back.DeliveredSeq, back.UpdatedAt = 11, at(4)
	if d := stateDiff(got, back); !changed || d != "" {
		t.Fatalf("AdvanceCursors after rejoin: changed = %v, %s", changed, d)
	}
}

func testJoinIdempotent(t *testing.T, s store.Store) {
	const uid, chat = "alice", "dm:alice:bob"
	mustJoin(t, s, uid, chat, at(0))
	mustAdvance(t, s, uid, chat, 4, 2, at(1))
	mustJoin(t, s, uid, chat, at(2))
	mustJoin(t, s, uid, chat, at(2))
	got, err := s.ChatStates(t.Context(), uid)
	if err != nil {
		t.Fatalf("ChatStates: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("ChatStates after repeated joins: %q, want one entry", chats(got))
	}
	st := got[0]
	if st.Chat != chat || st.DeliveredSeq != 4 || st.ReadSeq != 2 || st.Left {
		t.Fatalf("state after repeated joins = %+v, want cursors 4/2 kept and not left", st)
	}
}

// Chat ids share prefixes and contain ':' as real ids do; user ids too.
func testChatStatesOrdered(t *testing.T, s store.Store) {
	chatIDs := []string{"g:10", "dm:alice:bob", "g:1", "g:1:x", "g:2", "dm:alice:alice"}
	var want []store.ChatState
	for i, chat := range chatIDs {
		mustJoin(t, s, "alice", chat, at(i))
		st := store.ChatState{UserID: "alice", Chat: chat, UpdatedAt: at(i)}
		if i%2 == 0 {
			st.DeliveredSeq, st.ReadSeq, st.UpdatedAt = uint64(10+i), uint64(i), at(100+i)
			mustAdvance(t, s, "alice", chat, st.DeliveredSeq, st.ReadSeq, st.UpdatedAt)
		}
		if i == 3 {
			if err := s.LeaveChat(t.Context(), "alice", chat, at(200)); err != nil {
				t.Fatalf("LeaveChat: %v", err)
			}
			st.Left, st.UpdatedAt = true, at(200)
		}
		want = append(want, st)
	}
	// Other users, whose ids extend or shorten alice's.
	mustJoin(t, s, "alice2", "g:1", at(0))
	mustJoin(t, s, "alic", "g:zz", at(0))
	mustJoin(t, s, "bob", "dm:alice:bob", at(0))

	slices.SortFunc(want, func(a, b store.ChatState) int { return cmp.Compare(a.Chat, b.Chat) })
	checkStates(t, s, "alice", want...)
	checkStates(t, s, "alice2", store.ChatState{UserID: "alice2", Chat: "g:1", UpdatedAt: at(0)})
	checkStates(t, s, "nobody")
}

// Delivered and read acks race from a user's devices. Half the writers move
// only delivered and half only read, with rising values, so a read-modify-
// write without mutual exclusion shows up as the other cursor going back.
// A poller checks that no reader ever sees a cursor move backwards, and a
// concurrent JoinChat must not reset them; both end at the highest value.
func testConcurrentAdvance(t *testing.T, s store.Store) {
	const (
		uid, chat       = "alice", "g:race"
		workers, rounds = 8, 150 // per cursor
		top             = workers * rounds
	)
	mustJoin(t, s, uid, chat, at(0))
	var (
		wg, pg sync.WaitGroup
		start  = make(chan struct{})
		done   = make(chan struct{})
		errs   = make(chan error, 2*workers+2)
	)
	// monotonic fails when st has a cursor behind prev.
	monotonic := func(who string, prev, st store.ChatState) error {
		if st.DeliveredSeq < prev.DeliveredSeq || st.ReadSeq < prev.ReadSeq {
			return fmt.Errorf("%s saw cursors go back: %d/%d after %d/%d",
				who, st.DeliveredSeq, st.ReadSeq, prev.DeliveredSeq, prev.ReadSeq)
		}
		return nil
	}
	for w := range 2 * workers {
		wg.Go(func() {
			<-start
			var prev store.ChatState
			for r := range rounds {
				v := uint64(r*workers + w%workers + 1)
				d, rd := v, uint64(0)
				if w >= workers {
					d, rd = 0, v
				}
				st, _, err := s.AdvanceCursors(t.Context(), uid, chat, d, rd, at(1+r))
				if err == nil && (st.DeliveredSeq < d || st.ReadSeq < rd) {
					// The result already includes this call's values.
					err = fmt.Errorf("AdvanceCursors(%d, %d) returned %d/%d", d, rd, st.DeliveredSeq, st.ReadSeq)
				}
				if err == nil {
					err = monotonic(fmt.Sprintf("writer %d", w), prev, st)
				}
				if err != nil {
					errs <- err
					return
				}
				prev = st
			}
		})
	}
	wg.Go(func() {
		<-start
		for r := range rounds {
			if err := s.JoinChat(t.Context(), uid, chat, at(1+r)); err != nil {
				errs <- err
				return
			}
		}
	})
	pg.Go(func() {
		<-start
		var prev store.ChatState
		for {
			select {
			case <-done:
				return
			default:
			}
			st, err := s.ChatState(t.Context(), uid, chat)
			if err == nil {
				err = monotonic("poller", prev, st)
			}
			if err != nil {
				errs <- err
				return
			}
			prev = st
		}
	})
	close(start)
	wg.Wait()
	close(done)
	pg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.ChatState(t.Context(), uid, chat)
	if err != nil {
		t.Fatalf("ChatState: %v", err)
	}
	if got.DeliveredSeq != top || got.ReadSeq != top || got.Left {
		t.Fatalf("after concurrent advances: %+v, want delivered %d read %d", got, top, top)
	}
	// One more advance to the maximum is a no-op.
	if _, changed := mustAdvance(t, s, uid, chat, top, top, at(1000)); changed {
		t.Fatal("AdvanceCursors to the current maximum reported a change")
	}
}

// cursorContextTests check that every Cursors call fails with a dead
// context's error and that a write so refused changed nothing.
func cursorContextTests() []testCase {
	const uid, chat = "alice", "g:ctx"
	ops := []struct {
		name string
		call func(ctx context.Context, s store.Store) error
	}{
		{"JoinChat", func(ctx context.Context, s store.Store) error { return s.JoinChat(ctx, uid, "g:ctx-new", at(9)) }},
		{"RejoinChat", func(ctx context.Context, s store.Store) error { return s.JoinChat(ctx, uid, chat, at(9)) }},
		{"LeaveChat", func(ctx context.Context, s store.Store) error { return s.LeaveChat(ctx, uid, chat, at(9)) }},
		{"AdvanceCursors", func(ctx context.Context, s store.Store) error {
			_, _, err := s.AdvanceCursors(ctx, uid, chat, 100, 100, at(9))
			return err
		}},
		{"ChatState", func(ctx context.Context, s store.Store) error { _, err := s.ChatState(ctx, uid, chat); return err }},
		{"ChatStates", func(ctx context.Context, s store.Store) error { _, err := s.ChatStates(ctx, uid); return err }},
	}
	cases := make([]testCase, 0, len(ops))
	for _, op := range ops {
		cases = append(cases, testCase{"Canceled" + op.name, func(t *testing.T, s store.Store) {
			mustJoin(t, s, uid, chat, at(0))
			mustAdvance(t, s, uid, chat, 5, 3, at(1))
			want := store.ChatState{UserID: uid, Chat: chat, DeliveredSeq: 5, ReadSeq: 3, UpdatedAt: at(1)}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := op.call(ctx, s); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with canceled context: err = %v, want context.Canceled", op.name, err)
			}
			checkStates(t, s, uid, want)
		}})
	}
	return cases
}
