package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return openTest(t, t.TempDir(), Options{Now: now})
	})
}

func TestReopenKeepsChanges(t *testing.T) {
	dir := t.TempDir()
	storetest.RunReopen(t, func(t *testing.T) store.Store { return openTest(t, dir, Options{}) })
}

// TestDeletePurgesEveryValue reads every key of the store after a delete:
// the deleted text must be in no value, whatever History shows.
func TestDeletePurgesEveryValue(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	at := time.Now().Truncate(time.Millisecond)
	m1 := msg("g:p", 1, "u1", "c1", at)
	m1.Body = []byte(`"secret-one"`)
	edit := func(seq uint64, body string) store.Message {
		m := msg("g:p", seq, "u1", fmt.Sprint("c", seq), at)
		m.Type, m.Body, m.Change = "edit", []byte(body), &store.Change{Kind: store.ChangeEdit, Target: 1}
		return m
	}
	del := msg("g:p", 4, "u1", "c4", at)
	del.Type, del.Body, del.Change = "delete", nil, &store.Change{Kind: store.ChangeDelete, Target: 1}
	for _, batch := range [][]store.Message{{m1, edit(2, `"secret-two"`)}, {edit(3, `"secret-three"`)}, {del}} {
		if err := s.AppendMessages(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	it, err := s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
		if bytes.Contains(it.Value(), []byte("secret")) {
			t.Errorf("key %q still holds %q", it.Key(), it.Value())
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("read %d keys, want at least the 4 messages", n)
	}
}

func openTest(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// clock is a settable Options.Now; the sweeper goroutine reads it too.
type clock struct{ ms atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) set(t time.Time)     { c.ms.Store(t.UnixMilli()) }
func (c *clock) now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func msg(chat string, seq uint64, from, cmid string, sentAt time.Time) store.Message {
	return store.Message{
		Chat: chat, Seq: seq, ID: seq + 1000, From: from, CMID: cmid,
		Type: "text", Body: fmt.Appendf(nil, `{"n":%d}`, seq), SentAt: sentAt,
	}
}

func hasKey(t *testing.T, s *Store, k []byte) bool {
	t.Helper()
	ok, err := s.exists(k)
	if err != nil {
		t.Fatalf("exists(%q): %v", k, err)
	}
	return ok
}

func countPrefix(t *testing.T, s *Store, prefix string) int {
	t.Helper()
	lower := []byte(prefix)
	upper := append([]byte(prefix[:len(prefix)-1]), prefix[len(prefix)-1]+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	sent := time.Now().Truncate(time.Millisecond)
	user := store.User{ID: "u1", Username: "alice", PasswordHash: []byte("h"), CreatedAt: sent}
	msgs := []store.Message{
		msg("g:1", 1, "u1", "c1", sent), msg("g:1", 2, "u1", "c2", sent),
		msg("dm:u1:u2", 1, "u1", "c3", sent),
	}

	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.LastSeq(ctx, "g:1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("LastSeq after Close: err = %v, want ErrClosed", err)
	}

	s = openTest(t, dir, Options{})
	if got, err := s.LastSeq(ctx, "g:1"); err != nil || got != 2 {
		t.Fatalf("LastSeq(g:1) after reopen = %d, %v; want 2", got, err)
	}
	page, err := s.History(ctx, "g:1", store.HistoryQuery{Limit: 10})
	if err != nil || len(page) != 2 || page[1].Seq != 2 || string(page[1].Body) != `{"n":2}` {
		t.Fatalf("History(g:1) after reopen = %+v, %v", page, err)
	}
	if got, err := s.UserByUsername(ctx, "alice"); err != nil || got.ID != "u1" || !got.CreatedAt.Equal(sent) {
		t.Fatalf("UserByUsername after reopen = %+v, %v", got, err)
	}
	if ref, err := s.LookupDedupe(ctx, "u1", "c3"); err != nil || ref.Chat != "dm:u1:u2" || ref.Seq != 1 {
		t.Fatalf("LookupDedupe after reopen = %+v, %v", ref, err)
	}
	if err := s.CreateUser(ctx, store.User{ID: "u2", Username: "alice"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateUser with taken name after reopen: err = %v, want ErrConflict", err)
	}
}

func TestSweepExpired(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	// A long interval keeps the background sweeper out of the way.
	s := openTest(t, t.TempDir(), Options{Now: clk.now, SweepInterval: time.Hour * 1000})

	old := msg("g:1", 1, "alice", "old", t0.Add(-2*time.Hour))
	fresh := msg("g:1", 2, "alice", "fresh", t0)
	if err := s.AppendMessages(ctx, []store.Message{old, fresh}); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, s, prefixExpiry); n != 2 {
		t.Fatalf("expiry index holds %d entries, want 2", n)
	}

	clk.add(23 * time.Hour) // old is 25h old, fresh 23h
	if _, err := s.LookupDedupe(ctx, "alice", "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupDedupe(old) before sweep: err = %v, want ErrNotFound", err)
	}
	if n, err := s.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("SweepExpired = %d, %v; want 1", n, err)
	}
	if hasKey(t, s, dedupeKey("alice", "old")) || hasKey(t, s, expiryKey(old.SentAt, "alice", "old")) {
		t.Fatal("expired dedupe record or its index entry survived the sweep")
	}
	if !hasKey(t, s, dedupeKey("alice", "fresh")) || !hasKey(t, s, expiryKey(fresh.SentAt, "alice", "fresh")) {
		t.Fatal("sweep removed a live dedupe record")
	}

	clk.add(2 * time.Hour)
	if n, err := s.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("second SweepExpired = %d, %v; want 1", n, err)
	}
	if d, x := countPrefix(t, s, prefixDedupe), countPrefix(t, s, prefixExpiry); d != 0 || x != 0 {
		t.Fatalf("after sweeping all: %d dedupe records, %d index entries; want 0, 0", d, x)
	}
	if n, err := s.SweepExpired(ctx); err != nil || n != 0 {
		t.Fatalf("idle SweepExpired = %d, %v; want 0", n, err)
	}
	if page, err := s.History(ctx, "g:1", store.HistoryQuery{Limit: 10}); err != nil || len(page) != 2 {
		t.Fatalf("History after sweep = %d messages, %v; want 2", len(page), err)
	}
}

// A cmid reused after its record expired gets a new record; the old index
// entry must not take the new record with it.
func TestSweepKeepsReusedKey(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	s := openTest(t, t.TempDir(), Options{Now: clk.now, SweepInterval: time.Hour * 1000})

	if err := s.AppendMessages(ctx, []store.Message{msg("g:1", 1, "alice", "c", t0)}); err != nil {
		t.Fatal(err)
	}
	clk.add(25 * time.Hour)
	again := msg("g:1", 2, "alice", "c", clk.now())
	if err := s.AppendMessages(ctx, []store.Message{again}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepExpired(ctx); err != nil || n != 0 {
		t.Fatalf("SweepExpired = %d, %v; want 0 (record was replaced)", n, err)
	}
	if ref, err := s.LookupDedupe(ctx, "alice", "c"); err != nil || ref.Seq != 2 {
		t.Fatalf("LookupDedupe after sweep = %+v, %v; want seq 2", ref, err)
	}
	if n := countPrefix(t, s, prefixExpiry); n != 1 {
		t.Fatalf("expiry index holds %d entries, want 1", n)
	}
}

// LookupDedupe promises the message first stored for (sender, cmid): within
// a batch the first message gets the record, and a later batch repeating a
// live pair is refused whole.
func TestDedupeFirstStoredWins(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir(), Options{})
	now := time.Now()
	batch := []store.Message{msg("g:1", 1, "alice", "c", now), msg("g:1", 2, "alice", "c", now)}
	if err := s.AppendMessages(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMessages(ctx, []store.Message{msg("g:2", 1, "alice", "c", now)}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("AppendMessages repeating a live cmid: err = %v, want ErrConflict", err)
	}
	if last, err := s.LastSeq(ctx, "g:2"); err != nil || last != 0 {
		t.Fatalf("LastSeq(g:2) = %d, %v; want 0", last, err)
	}
	if ref, err := s.LookupDedupe(ctx, "alice", "c"); err != nil || ref.Chat != "g:1" || ref.Seq != 1 {
		t.Fatalf("LookupDedupe = %+v, %v; want g:1 seq 1", ref, err)
	}
}

func TestBackgroundSweeper(t *testing.T) {
	ctx := t.Context()
	t0 := time.Now()
	clk := newClock(t0)
	s := openTest(t, t.TempDir(), Options{Now: clk.now, SweepInterval: 5 * time.Millisecond})
	if err := s.AppendMessages(ctx, []store.Message{msg("g:1", 1, "alice", "c", t0)}); err != nil {
		t.Fatal(err)
	}
	clk.add(store.DedupeWindow + time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for hasKey(t, s, dedupeKey("alice", "c")) {
		if time.Now().After(deadline) {
			t.Fatal("background sweeper did not delete the expired record")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentAppend(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir(), Options{SweepInterval: time.Millisecond})
	const writers, batches, perBatch = 8, 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			chat := fmt.Sprintf("g:%d", w)
			seq := uint64(0)
			for range batches {
				batch := make([]store.Message, perBatch)
				for i := range batch {
					seq++
					batch[i] = msg(chat, seq, fmt.Sprintf("u%d", w), fmt.Sprintf("c%d", seq), time.Now())
				}
				if err := s.AppendMessages(ctx, batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// A reader and a sweeper running alongside the writers.
	var rg sync.WaitGroup
	rg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.History(ctx, "g:0", store.HistoryQuery{Limit: 50}); err != nil {
				errs <- err
				return
			}
			if _, err := s.SweepExpired(ctx); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		chat := fmt.Sprintf("g:%d", w)
		if last, err := s.LastSeq(ctx, chat); err != nil || last != batches*perBatch {
			t.Fatalf("LastSeq(%s) = %d, %v; want %d", chat, last, err, batches*perBatch)
		}
		page, err := s.History(ctx, chat, store.HistoryQuery{Limit: batches * perBatch})
		if err != nil || len(page) != batches*perBatch {
			t.Fatalf("History(%s) = %d messages, %v", chat, len(page), err)
		}
		for i, m := range page {
			if m.Seq != uint64(i+1) || m.From != fmt.Sprintf("u%d", w) {
				t.Fatalf("History(%s)[%d] = seq %d from %s", chat, i, m.Seq, m.From)
			}
		}
	}
}

func TestRejectsNULInIDs(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	for _, m := range []store.Message{msg("g\x00x", 1, "u", "c", time.Now()), msg("g:1", 1, "u\x00", "c", time.Now())} {
		if err := s.AppendMessages(t.Context(), []store.Message{m}); !errors.Is(err, errBadID) {
			t.Errorf("AppendMessages(chat %q, from %q): err = %v, want errBadID", m.Chat, m.From, err)
		}
	}
	if last, _ := s.LastSeq(t.Context(), "g:1"); last != 0 {
		t.Fatalf("a rejected batch was partly stored: LastSeq = %d", last)
	}
}

func TestCodecRejectsCorrupt(t *testing.T) {
	m := msg("g:1", 1, "u", "c", time.Now())
	v := encodeMessage(nil, &m)
	var got store.Message
	for _, bad := range [][]byte{nil, {0}, {messageV1}, v[:3], append([]byte{9}, v[1:]...)} {
		if err := decodeMessage(bad, &got); !errors.Is(err, errCorrupt) {
			t.Errorf("decodeMessage(%q): err = %v, want errCorrupt", bad, err)
		}
	}
	u := encodeUser(&store.User{ID: "u", Username: "n"})
	if _, err := decodeUser(append(u, 0)); !errors.Is(err, errCorrupt) {
		t.Errorf("decodeUser with trailing byte: err = %v, want errCorrupt", err)
	}
}

// A refused batch leaves nothing behind in any of its chats: the checks run
// before anything is written, and the batch is one atomic commit.
func TestAppendConflictIsAtomic(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir(), Options{})
	now := time.Now()
	if err := s.AppendMessages(ctx, []store.Message{msg("g:1", 1, "u", "a", now)}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		batch []store.Message
	}{
		{"taken seq in another chat", []store.Message{msg("g:2", 1, "u", "b", now), msg("g:1", 1, "u", "c", now)}},
		{"live cmid in another chat", []store.Message{msg("g:2", 1, "u", "b", now), msg("g:3", 1, "u", "a", now)}},
		{"same seq twice in the batch", []store.Message{msg("g:2", 1, "u", "b", now), msg("g:2", 1, "u", "c", now)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AppendMessages(ctx, tc.batch); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("AppendMessages: err = %v, want ErrConflict", err)
			}
			for _, chat := range []string{"g:2", "g:3"} {
				if last, err := s.LastSeq(ctx, chat); err != nil || last != 0 {
					t.Fatalf("LastSeq(%s) = %d, %v; want 0", chat, last, err)
				}
			}
			for _, cmid := range []string{"b", "c"} {
				if _, err := s.LookupDedupe(ctx, "u", cmid); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("LookupDedupe(u, %s): err = %v, want ErrNotFound", cmid, err)
				}
			}
			if len(s.inflight) != 0 {
				t.Fatalf("%d keys still reserved after the refused batch", len(s.inflight))
			}
		})
	}
}

// Device-message dedupe records have their own expiry index, swept with
// the chat ones; the messages themselves stay until acknowledged.
func TestSweepDeviceDedupe(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	s := openTest(t, t.TempDir(), Options{Now: clk.now, SweepInterval: time.Hour * 1000})

	m := store.DeviceMessage{ToUser: "bob", ToDevice: "phone", From: "alice", CMID: "c1", Body: []byte(`"x"`)}
	if _, dup, err := s.PutDeviceMessage(ctx, m, 0); err != nil || dup {
		t.Fatalf("PutDeviceMessage = dup %v, %v", dup, err)
	}
	if err := s.AppendMessages(ctx, []store.Message{msg("g:1", 1, "alice", "c1", t0)}); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Hour)
	m2 := m
	m2.CMID = "c2"
	if _, dup, err := s.PutDeviceMessage(ctx, m2, 0); err != nil || dup {
		t.Fatalf("PutDeviceMessage = dup %v, %v", dup, err)
	}
	if d, x := countPrefix(t, s, prefixDeviceDedupe), countPrefix(t, s, prefixDeviceExpiry); d != 2 || x != 2 {
		t.Fatalf("%d device dedupe records, %d index entries; want 2, 2", d, x)
	}

	clk.add(store.DedupeWindow - time.Hour) // c1 (both kinds) is 25 h old, c2 23 h
	if n, err := s.SweepExpired(ctx); err != nil || n != 2 {
		t.Fatalf("SweepExpired = %d, %v; want 2 (a chat and a device record)", n, err)
	}
	if hasKey(t, s, deviceDedupe.key("alice", "c1")) || !hasKey(t, s, deviceDedupe.key("alice", "c2")) {
		t.Fatal("the sweep kept the expired device record or removed the live one")
	}
	if x := countPrefix(t, s, prefixDeviceExpiry); x != 1 {
		t.Fatalf("%d device index entries after the sweep, want 1", x)
	}
	if got, dup, err := s.PutDeviceMessage(ctx, m, 0); err != nil || dup || got.Seq != 3 {
		t.Fatalf("c1 after its record expired = seq %d, dup %v, %v; want a new message, seq 3", got.Seq, dup, err)
	}
	if msgs, err := s.PendingDeviceMessages(ctx, "bob", "phone", 0, 10); err != nil || len(msgs) != 3 {
		t.Fatalf("PendingDeviceMessages = %d messages, %v; want 3", len(msgs), err)
	}
}
