package postgres_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/pgtest"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/postgres"
)

func msg(chat string, seq uint64, from, cmid string, sentAt time.Time) store.Message {
	return store.Message{Chat: chat, Seq: seq, ID: seq + 1000, From: from, CMID: cmid,
		Type: "text", Body: []byte(`{"n":1}`), SentAt: sentAt}
}

// What one Store wrote, a new Store on the same database reads: nothing
// lives in the process.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	sent := time.Now().Truncate(time.Millisecond)
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, store.User{ID: "u1", Username: "alice", PasswordHash: []byte("h"), CreatedAt: sent}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMessages(ctx, []store.Message{msg("g:1", 1, "u1", "c1", sent), msg("g:1", 2, "u1", "c2", sent)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s, err = postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, err := s.LastSeq(ctx, "g:1"); err != nil || last != 2 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 2", last, err)
	}
	if ref, err := s.LookupDedupe(ctx, "u1", "c2"); err != nil || ref.Seq != 2 {
		t.Fatalf("LookupDedupe after reopen = %+v, %v", ref, err)
	}
	if u, err := s.UserByUsername(ctx, "alice"); err != nil || u.ID != "u1" {
		t.Fatalf("UserByUsername after reopen = %+v, %v", u, err)
	}
}

// clock is a settable Options.Now.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *clock) set(t time.Time)     { c.ms.Store(t.UnixMilli()) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func TestDedupeWindowAndSweep(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{}
	clk.set(t0)
	s, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{Now: clk.now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// First stored wins, within a batch and across batches.
	batch := []store.Message{
		msg("g:1", 1, "alice", "old", t0.Add(-2*time.Hour)),
		msg("g:1", 2, "alice", "fresh", t0),
		msg("g:1", 3, "alice", "fresh", t0),
	}
	if err := s.AppendMessages(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// A live pair refuses the whole later batch.
	err = s.AppendMessages(ctx, []store.Message{msg("g:2", 1, "alice", "fresh", t0)})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("AppendMessages repeating a live cmid: err = %v, want ErrConflict", err)
	}
	if last, err := s.LastSeq(ctx, "g:2"); err != nil || last != 0 {
		t.Fatalf("LastSeq(g:2) after the refused batch = %d, %v; want 0", last, err)
	}
	if ref, err := s.LookupDedupe(ctx, "alice", "fresh"); err != nil || ref.Chat != "g:1" || ref.Seq != 2 {
		t.Fatalf("LookupDedupe(fresh) = %+v, %v; want g:1 seq 2", ref, err)
	}

	clk.add(23 * time.Hour) // old is 25 h old, fresh 23 h
	if _, err := s.LookupDedupe(ctx, "alice", "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupDedupe(old) before sweep: err = %v, want ErrNotFound", err)
	}
	if n, err := s.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("SweepExpired = %d, %v; want 1", n, err)
	}
	// An expired key is free again: a new message takes it over.
	clk.add(2 * time.Hour)
	again := msg("g:3", 1, "alice", "fresh", clk.now())
	if err := s.AppendMessages(ctx, []store.Message{again}); err != nil {
		t.Fatal(err)
	}
	if ref, err := s.LookupDedupe(ctx, "alice", "fresh"); err != nil || ref.Chat != "g:3" {
		t.Fatalf("LookupDedupe after expiry and reuse = %+v, %v; want g:3", ref, err)
	}
	if n, err := s.SweepExpired(ctx); err != nil || n != 0 {
		t.Fatalf("SweepExpired = %d, %v; want 0 (the record was replaced)", n, err)
	}
	if page, err := s.History(ctx, "g:1", store.HistoryQuery{Limit: 10}); err != nil || len(page) != 3 {
		t.Fatalf("History after sweep = %d messages, %v; want 3", len(page), err)
	}
}

// A failed batch leaves nothing behind: messages and dedupe records are one
// transaction.
func TestAppendIsAtomic(t *testing.T) {
	ctx := t.Context()
	s, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.AppendMessages(ctx, []store.Message{msg("g:1", 1, "u", "a", now)}); err != nil {
		t.Fatal(err)
	}
	// seq 1 again collides with the stored row, after seq 2's rows were sent.
	err = s.AppendMessages(ctx, []store.Message{msg("g:2", 1, "u", "b", now), msg("g:1", 1, "u", "c", now)})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("AppendMessages with a taken seq: err = %v, want ErrConflict", err)
	}
	if last, err := s.LastSeq(ctx, "g:2"); err != nil || last != 0 {
		t.Fatalf("LastSeq(g:2) after the failed batch = %d, %v; want 0", last, err)
	}
	if _, err := s.LookupDedupe(ctx, "u", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("dedupe record of the failed batch: err = %v, want ErrNotFound", err)
	}
}
