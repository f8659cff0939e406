package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func blockTests() []testCase {
	return []testCase{
		{"PutListOrdered", testBlockPutList},
		{"PutKeepsFirstTime", testBlockPutKeepsFirstTime},
		{"OneWay", testBlockOneWay},
		{"Delete", testBlockDelete},
		{"CanceledContext", testBlockCanceled},
	}
}

// checkBlocks fails unless uid's blocks are exactly want, in order.
func checkBlocks(t *testing.T, s store.Store, uid string, want ...store.Block) {
	t.Helper()
	got, err := s.BlocksOf(t.Context(), uid)
	if err != nil {
		t.Fatalf("BlocksOf(%q): %v", uid, err)
	}
	if got == nil {
		t.Fatalf("BlocksOf(%q) = nil, want a non-nil slice", uid)
	}
	if len(got) != len(want) {
		t.Fatalf("BlocksOf(%q) = %+v, want %+v", uid, got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.UserID != w.UserID || g.BlockedID != w.BlockedID || !sameInstant(g.CreatedAt, w.CreatedAt) {
			t.Fatalf("BlocksOf(%q)[%d] = %+v, want %+v", uid, i, g, w)
		}
	}
}

func mustPutBlock(t *testing.T, s store.Store, b store.Block) {
	t.Helper()
	if err := s.PutBlock(t.Context(), b); err != nil {
		t.Fatalf("PutBlock(%+v): %v", b, err)
	}
}

func testBlockPutList(t *testing.T, s store.Store) {
	at := time.Now().Truncate(time.Millisecond)
	// Inserted out of order; listed by blocked id (bytes, "B" < "a").
	bs := []store.Block{
		{UserID: "u1", BlockedID: "c", CreatedAt: at},
		{UserID: "u1", BlockedID: "a", CreatedAt: at.Add(time.Second)},
		{UserID: "u1", BlockedID: "B", CreatedAt: at.Add(2 * time.Second)},
	}
	for _, b := range bs {
		mustPutBlock(t, s, b)
	}
	checkBlocks(t, s, "u1", bs[2], bs[1], bs[0])
	// A user id that is a prefix of another must not see its blocks.
	checkBlocks(t, s, "u")
	checkBlocks(t, s, "nobody")
}

func testBlockPutKeepsFirstTime(t *testing.T, s store.Store) {
	first := store.Block{UserID: "u1", BlockedID: "u2", CreatedAt: time.Now().Truncate(time.Millisecond)}
	mustPutBlock(t, s, first)
	again := first
	again.CreatedAt = first.CreatedAt.Add(time.Hour)
	mustPutBlock(t, s, again)
	checkBlocks(t, s, "u1", first)
}

func testBlockOneWay(t *testing.T, s store.Store) {
	b := store.Block{UserID: "u1", BlockedID: "u2", CreatedAt: time.Now().Truncate(time.Millisecond)}
	mustPutBlock(t, s, b)
	checkBlocks(t, s, "u2")
	checkBlocks(t, s, "u1", b)
}

func testBlockDelete(t *testing.T, s store.Store) {
	at := time.Now().Truncate(time.Millisecond)
	keep := store.Block{UserID: "u1", BlockedID: "u3", CreatedAt: at}
	mustPutBlock(t, s, store.Block{UserID: "u1", BlockedID: "u2", CreatedAt: at})
	mustPutBlock(t, s, keep)
	if err := s.DeleteBlock(t.Context(), "u1", "u2"); err != nil {
		t.Fatalf("DeleteBlock: %v", err)
	}
	checkBlocks(t, s, "u1", keep)
	if err := s.DeleteBlock(t.Context(), "u1", "u2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteBlock = %v, want ErrNotFound", err)
	}
	if err := s.DeleteBlock(t.Context(), "u3", "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteBlock of the reverse pair = %v, want ErrNotFound", err)
	}
	// A block can be made again after it was lifted, with its new time.
	again := store.Block{UserID: "u1", BlockedID: "u2", CreatedAt: at.Add(time.Minute)}
	mustPutBlock(t, s, again)
	checkBlocks(t, s, "u1", again, keep)
}

func testBlockCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := store.Block{UserID: "u1", BlockedID: "u2", CreatedAt: time.Now()}
	if err := s.PutBlock(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutBlock with a cancelled context = %v, want context.Canceled", err)
	}
	checkBlocks(t, s, "u1")
	if _, err := s.BlocksOf(ctx, "u1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("BlocksOf with a cancelled context = %v, want context.Canceled", err)
	}
}
