package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func dedupeTests() []testCase {
	return []testCase{
		{"LookupAfterAppend", testDedupeLookup},
		{"ScopedBySender", testDedupeScopedBySender},
		{"Unknown", testDedupeUnknown},
		{"EmptyCMIDNotRecorded", testDedupeEmptyCMID},
		{"OutsideWindow", testDedupeOutsideWindow},
	}
}

func refOf(m store.Message) store.MessageRef {
	return store.MessageRef{Chat: m.Chat, Seq: m.Seq, ID: m.ID, SentAt: m.SentAt}
}

func checkRef(t *testing.T, s store.Store, sender, cmid string, want store.MessageRef) {
	t.Helper()
	got, err := s.LookupDedupe(t.Context(), sender, cmid)
	if err != nil {
		t.Fatalf("LookupDedupe(%q, %q): %v", sender, cmid, err)
	}
	if got.Chat != want.Chat || got.Seq != want.Seq || got.ID != want.ID || !sameInstant(got.SentAt, want.SentAt) {
		t.Fatalf("LookupDedupe(%q, %q) = %+v, want %+v", sender, cmid, got, want)
	}
}

func checkNoRef(t *testing.T, s store.Store, sender, cmid string) {
	t.Helper()
	if got, err := s.LookupDedupe(t.Context(), sender, cmid); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupDedupe(%q, %q) = %+v, %v; want ErrNotFound", sender, cmid, got, err)
	}
}

func testDedupeLookup(t *testing.T, s store.Store) {
	msgs := append(makeMessages("g:d1", 1, 5), makeMessages("dm:a:b", 1, 2)...)
	mustAppend(t, s, msgs)
	for _, m := range msgs {
		checkRef(t, s, m.From, m.CMID, refOf(m))
	}
}

// The dedupe key is (From, CMID): the same cmid from two senders names two
// messages, even in the same chat.
func testDedupeScopedBySender(t *testing.T, s store.Store) {
	msgs := makeMessages("g:d2", 1, 3)
	msgs[0].From, msgs[0].CMID = "alice", "same"
	msgs[1].From, msgs[1].CMID = "bob", "same"
	msgs[2].From, msgs[2].CMID = "alice", "other"
	mustAppend(t, s, msgs)
	other := makeMessages("g:d2b", 1, 1)
	other[0].From, other[0].CMID = "carol", "same"
	mustAppend(t, s, other)

	checkRef(t, s, "alice", "same", refOf(msgs[0]))
	checkRef(t, s, "bob", "same", refOf(msgs[1]))
	checkRef(t, s, "alice", "other", refOf(msgs[2]))
	checkRef(t, s, "carol", "same", refOf(other[0]))
	checkNoRef(t, s, "bob", "other")
}

func testDedupeUnknown(t *testing.T, s store.Store) {
	checkNoRef(t, s, "alice", "cm-1") // empty store
	msgs := makeMessages("g:d3", 1, 1)
	msgs[0].From, msgs[0].CMID = "alice", "cm-1"
	mustAppend(t, s, msgs)
	checkNoRef(t, s, "alice", "cm-2")
	checkNoRef(t, s, "alice", "cm-")
	checkNoRef(t, s, "alic", "cm-1")
	checkNoRef(t, s, "mallory", "cm-1")
}

// A message without a cmid is stored but is not deduplicated.
func testDedupeEmptyCMID(t *testing.T, s store.Store) {
	msgs := makeMessages("g:d4", 1, 1)
	msgs[0].From, msgs[0].CMID = "alice", ""
	mustAppend(t, s, msgs)
	checkNoRef(t, s, "alice", "")
	checkHistory(t, s, "g:d4", msgs, []historyCase{{store.HistoryQuery{Limit: 5}, 1, 1}})
}

// A record past store.DedupeWindow is invisible whether or not the backend
// has removed it yet, while its message stays in the log.
func testDedupeOutsideWindow(t *testing.T, s store.Store) {
	now := time.Now().Truncate(time.Millisecond)
	msgs := makeMessages("g:d5", 1, 3)
	msgs[0].SentAt = now.Add(-store.DedupeWindow - time.Hour) // 25h ago
	msgs[1].SentAt = now.Add(-store.DedupeWindow + time.Hour) // 23h ago
	msgs[2].SentAt = now
	mustAppend(t, s, msgs)

	checkNoRef(t, s, msgs[0].From, msgs[0].CMID)
	checkRef(t, s, msgs[1].From, msgs[1].CMID, refOf(msgs[1]))
	checkRef(t, s, msgs[2].From, msgs[2].CMID, refOf(msgs[2]))
	checkHistory(t, s, "g:d5", msgs, []historyCase{{store.HistoryQuery{Limit: 10}, 1, 3}})
}
