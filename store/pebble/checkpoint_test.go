package pebble

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

// TestCheckpoint: a checkpoint taken while the store is open holds every
// write committed before it and none after, and opens as a store.
func TestCheckpoint(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{})
	now := time.Now().UTC()
	if err := s.AppendMessages(ctx, []store.Message{msg("d:a:b", 1, "a", "c1", now), msg("d:a:b", 2, "a", "c2", now)}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cp")
	if err := s.Checkpoint(ctx, dir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if err := s.AppendMessages(ctx, []store.Message{msg("d:a:b", 3, "a", "c3", now)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx, dir); err == nil {
		t.Fatal("Checkpoint into an existing dir succeeded")
	}
	cp := openTest(t, dir, Options{})
	got, err := cp.History(ctx, "d:a:b", store.HistoryQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var cmids []string
	for _, m := range got {
		cmids = append(cmids, m.CMID)
	}
	if len(cmids) != 2 || !slices.Contains(cmids, "c1") || !slices.Contains(cmids, "c2") {
		t.Fatalf("checkpoint holds %v, want c1 and c2 only", cmids)
	}
}
