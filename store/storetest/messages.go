package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func messageTests() []testCase {
	return []testCase{
		{"AppendNothing", testAppendNothing},
		{"HistoryNewest", testHistoryNewest},
		{"HistoryAfter", testHistoryAfter},
		{"HistoryBefore", testHistoryBefore},
		{"HistoryEmptyChat", testHistoryEmptyChat},
		{"ChatsIsolated", testChatsIsolated},
		{"BatchSpansChats", testBatchSpansChats},
		{"FieldsRoundTrip", testMessageFieldsRoundTrip},
		{"LastSeq", testLastSeq},
		{"ManyMessagesAcrossBuckets", testManyMessages},
	}
}

// historyCase is one query against a chat holding seqs 1..n, expecting the
// ascending range first..last (first > last for an empty page).
type historyCase struct {
	q           store.HistoryQuery
	first, last uint64
}

// checkHistory runs every case against chat, whose messages are all (seq
// i+1 at index i).
func checkHistory(t *testing.T, s store.Store, chat string, all []store.Message, cases []historyCase) {
	t.Helper()
	for _, c := range cases {
		got, err := s.History(t.Context(), chat, c.q)
		what := fmt.Sprintf("History(%q, %+v)", chat, c.q)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var want []store.Message
		if c.first <= c.last {
			want = all[c.first-1 : c.last]
		}
		checkPage(t, what, got, want)
	}
}

func testAppendNothing(t *testing.T, s store.Store) {
	if err := s.AppendMessages(t.Context(), nil); err != nil {
		t.Fatalf("AppendMessages(nil): %v", err)
	}
}

func testHistoryNewest(t *testing.T, s store.Store) {
	all := makeMessages("g:newest", 1, 10)
	mustAppend(t, s, all)
	checkHistory(t, s, "g:newest", all, []historyCase{
		{store.HistoryQuery{Limit: 3}, 8, 10},
		{store.HistoryQuery{Limit: 1}, 10, 10},
		{store.HistoryQuery{Limit: 10}, 1, 10},
		{store.HistoryQuery{Limit: 1000}, 1, 10},
	})
}

func testHistoryAfter(t *testing.T, s store.Store) {
	all := makeMessages("g:after", 1, 10)
	mustAppend(t, s, all)
	checkHistory(t, s, "g:after", all, []historyCase{
		{store.HistoryQuery{After: 3, Limit: 4}, 4, 7},
		{store.HistoryQuery{After: 1, Limit: 1}, 2, 2},
		{store.HistoryQuery{After: 7, Limit: 100}, 8, 10},
		{store.HistoryQuery{After: 9, Limit: 5}, 10, 10},
		{store.HistoryQuery{After: 10, Limit: 5}, 1, 0},
		{store.HistoryQuery{After: 1 << 40, Limit: 5}, 1, 0},
	})
}

func testHistoryBefore(t *testing.T, s store.Store) {
	all := makeMessages("g:before", 1, 10)
	mustAppend(t, s, all)
	checkHistory(t, s, "g:before", all, []historyCase{
		{store.HistoryQuery{Before: 8, Limit: 3}, 5, 7},
		{store.HistoryQuery{Before: 3, Limit: 5}, 1, 2},
		{store.HistoryQuery{Before: 2, Limit: 1}, 1, 1},
		{store.HistoryQuery{Before: 1, Limit: 5}, 1, 0},
		{store.HistoryQuery{Before: 11, Limit: 2}, 9, 10},
		{store.HistoryQuery{Before: 1 << 40, Limit: 100}, 1, 10},
	})
}

func testHistoryEmptyChat(t *testing.T, s store.Store) {
	// A neighbouring chat must not leak into the empty one.
	mustAppend(t, s, makeMessages("g:other", 1, 3))
	for _, q := range []store.HistoryQuery{{Limit: 10}, {After: 1, Limit: 10}, {Before: 5, Limit: 10}} {
		got, err := s.History(t.Context(), "g:empty", q)
		if err != nil {
			t.Fatalf("History(empty chat, %+v): err = %v, want empty page", q, err)
		}
		if len(got) != 0 {
			t.Fatalf("History(empty chat, %+v): got seqs %v, want none", q, seqs(got))
		}
	}
}

// The chat ids share prefixes ("g:1" of "g:10") and contain ':' as real ids
// do, to catch key layouts that let one chat's range cover another's.
func testChatsIsolated(t *testing.T, s store.Store) {
	chats := map[string]uint64{"g:1": 5, "g:10": 7, "g:1:x": 2, "dm:u1:u2": 4}
	all := map[string][]store.Message{}
	for chat, n := range chats {
		all[chat] = makeMessages(chat, 1, n)
		mustAppend(t, s, all[chat])
	}
	for chat, n := range chats {
		checkHistory(t, s, chat, all[chat], []historyCase{
			{store.HistoryQuery{Limit: 100}, 1, n},
			{store.HistoryQuery{After: 1, Limit: 100}, 2, n},
			{store.HistoryQuery{Before: n, Limit: 100}, 1, n - 1},
		})
		last, err := s.LastSeq(t.Context(), chat)
		if err != nil || last != n {
			t.Fatalf("LastSeq(%q) = %d, %v; want %d", chat, last, err, n)
		}
	}
}

func testBatchSpansChats(t *testing.T, s store.Store) {
	a, b, c := makeMessages("g:a", 1, 4), makeMessages("g:b", 1, 2), makeMessages("dm:a:b", 1, 3)
	// Interleaved, each chat still in seq order, as a writer flush would be.
	var batch []store.Message
	for i := range 4 {
		for _, msgs := range [][]store.Message{a, b, c} {
			if i < len(msgs) {
				batch = append(batch, msgs[i])
			}
		}
	}
	mustAppend(t, s, batch)
	for _, msgs := range [][]store.Message{a, b, c} {
		chat, n := msgs[0].Chat, uint64(len(msgs))
		checkHistory(t, s, chat, msgs, []historyCase{{store.HistoryQuery{Limit: 10}, 1, n}})
		if last, err := s.LastSeq(t.Context(), chat); err != nil || last != n {
			t.Fatalf("LastSeq(%q) = %d, %v; want %d", chat, last, err, n)
		}
	}
}

func testMessageFieldsRoundTrip(t *testing.T, s store.Store) {
	sent := time.Date(2025, 6, 1, 12, 30, 45, 987654321, time.FixedZone("Y", -7*3600))
	msgs := []store.Message{
		{Chat: "g:rt", Seq: 1, ID: 1<<63 | 12345, From: "u-1", CMID: "cm-1", Type: "text",
			Body: []byte(`{"k":[1,2]}`), SentAt: sent},
		{Chat: "g:rt", Seq: 2, ID: 7, From: "u-2", CMID: "", Type: "image/ü",
			Body: []byte(`"text"`), ReplyTo: 1, SentAt: sent.Add(time.Millisecond)},
		{Chat: "g:rt", Seq: 3, ID: 8, From: "u-1", CMID: "cm-\x00-\xff", Type: "x",
			Body: []byte(`{"s":"line\nbreak \u0000"}`), ReplyTo: 2, SentAt: time.Now()},
	}
	mustAppend(t, s, msgs)
	checkHistory(t, s, "g:rt", msgs, []historyCase{
		{store.HistoryQuery{Limit: 10}, 1, 3},
		{store.HistoryQuery{After: 1, Limit: 10}, 2, 3},
		{store.HistoryQuery{Before: 3, Limit: 10}, 1, 2},
	})
}

func testLastSeq(t *testing.T, s store.Store) {
	ctx := t.Context()
	check := func(want uint64) {
		t.Helper()
		if got, err := s.LastSeq(ctx, "g:last"); err != nil || got != want {
			t.Fatalf("LastSeq = %d, %v; want %d", got, err, want)
		}
	}
	check(0)
	mustAppend(t, s, makeMessages("g:last", 1, 3))
	check(3)
	mustAppend(t, s, makeMessages("g:last", 4, 9))
	check(9)
	mustAppend(t, s, makeMessages("g:last+", 1, 20)) // a later-sorting neighbour
	check(9)
}

// testManyMessages crosses the 4096-seq partitions of bucketed backends:
// bucket 0 holds seqs 0..4095, bucket 1 holds 4096..8191.
func testManyMessages(t *testing.T, s store.Store) {
	const chat, n, batch = "g:many", 5000, 500
	all := makeMessages(chat, 1, n)
	for i := 0; i < n; i += batch {
		mustAppend(t, s, all[i:i+batch])
	}
	if last, err := s.LastSeq(t.Context(), chat); err != nil || last != n {
		t.Fatalf("LastSeq = %d, %v; want %d", last, err, n)
	}
	checkHistory(t, s, chat, all, []historyCase{
		{store.HistoryQuery{After: 4090, Limit: 10}, 4091, 4100},
		{store.HistoryQuery{After: 4094, Limit: 2}, 4095, 4096},
		{store.HistoryQuery{After: 4095, Limit: 2}, 4096, 4097},
		{store.HistoryQuery{After: 4096, Limit: 3}, 4097, 4099},
		{store.HistoryQuery{Before: 4100, Limit: 10}, 4090, 4099},
		{store.HistoryQuery{Before: 4098, Limit: 2}, 4096, 4097},
		{store.HistoryQuery{Before: 4097, Limit: 5}, 4092, 4096},
		{store.HistoryQuery{Before: 4096, Limit: 2}, 4094, 4095},
		{store.HistoryQuery{Limit: 10}, 4991, 5000},
		{store.HistoryQuery{Limit: 1000}, 4001, 5000},
		{store.HistoryQuery{After: 4000, Limit: 2000}, 4001, 5000},
		{store.HistoryQuery{Before: 4200, Limit: 4199}, 1, 4199},
		{store.HistoryQuery{After: 1, Limit: 8191}, 2, 5000},
		{store.HistoryQuery{Before: 5001, Limit: 10000}, 1, 5000},
	})
	walkForward(t, s, chat, all, 333)
	walkBackward(t, s, chat, all, 333)
}

// walkForward pages oldest to newest as a catching-up client does. After 0
// means "unset", so the first page comes from Before.
func walkForward(t *testing.T, s store.Store, chat string, all []store.Message, page int) {
	t.Helper()
	got, err := s.History(t.Context(), chat, store.HistoryQuery{Before: uint64(page) + 1, Limit: page})
	if err != nil {
		t.Fatalf("History first page: %v", err)
	}
	for len(got) > 0 {
		last := got[len(got)-1].Seq
		next, err := s.History(t.Context(), chat, store.HistoryQuery{After: last, Limit: page})
		if err != nil {
			t.Fatalf("History(After %d): %v", last, err)
		}
		got = append(got, next...)
		if len(next) == 0 {
			break
		}
	}
	checkPage(t, "forward walk", got, all)
}

// walkBackward pages newest to oldest as a scrolling-up client does.
func walkBackward(t *testing.T, s store.Store, chat string, all []store.Message, page int) {
	t.Helper()
	var got []store.Message
	q := store.HistoryQuery{Limit: page}
	for {
		p, err := s.History(t.Context(), chat, q)
		if err != nil {
			t.Fatalf("History(%+v): %v", q, err)
		}
		if len(p) == 0 {
			break
		}
		got = append(p, got...)
		q.Before = p[0].Seq
	}
	checkPage(t, "backward walk", got, all)
}
