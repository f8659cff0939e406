package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func retentionTests() []testCase {
	return []testCase{
		{"PurgeNewChat", testPurgeNewChat},
		{"PurgeByTime", testPurgeByTime},
		{"PurgeByLimit", testPurgeByLimit},
		{"PurgeStopsAtFirstKept", testPurgeStopsAtFirstKept},
		{"PurgeEverythingKeepsLastSeq", testPurgeEverything},
		{"PurgeKeepsOtherChats", testPurgeKeepsOtherChats},
		{"PurgeAndChanges", testPurgeAndChanges},
		{"PurgedRestored", testPurgedRestored},
		{"ListChats", testListChats},
		{"Settings", testRetentionSettings},
	}
}

func mustPurge(t *testing.T, s store.Store, chat string, before time.Time, limit int, wantN int, wantFirst uint64) {
	t.Helper()
	n, first, err := s.PurgeMessages(t.Context(), chat, before, limit)
	if err != nil {
		t.Fatalf("PurgeMessages(%q, %v, %d): %v", chat, before, limit, err)
	}
	if n != wantN || first != wantFirst {
		t.Fatalf("PurgeMessages(%q, %v, %d) = %d, first %d; want %d, first %d", chat, before, limit, n, first, wantN, wantFirst)
	}
}

// checkSeqs checks FirstSeq, LastSeq and that History holds exactly
// first..last.
func checkSeqs(t *testing.T, s store.Store, chat string, all []store.Message, first, last uint64) {
	t.Helper()
	gotFirst, err := s.FirstSeq(t.Context(), chat)
	if err != nil {
		t.Fatalf("FirstSeq(%q): %v", chat, err)
	}
	gotLast, err := s.LastSeq(t.Context(), chat)
	if err != nil {
		t.Fatalf("LastSeq(%q): %v", chat, err)
	}
	firsts, err := s.FirstSeqs(t.Context(), []string{chat, "g:rt-untouched"})
	if err != nil {
		t.Fatalf("FirstSeqs(%q): %v", chat, err)
	}
	if firsts[chat] != gotFirst || firsts["g:rt-untouched"] != 1 || len(firsts) != 2 {
		t.Fatalf("FirstSeqs = %v, want %s: %d and g:rt-untouched: 1", firsts, chat, gotFirst)
	}
	if gotFirst != first || gotLast != last {
		t.Fatalf("%q: FirstSeq %d, LastSeq %d; want %d, %d", chat, gotFirst, gotLast, first, last)
	}
	got, err := s.History(t.Context(), chat, store.HistoryQuery{Limit: 1000})
	if err != nil {
		t.Fatalf("History(%q): %v", chat, err)
	}
	var want []store.Message
	if first <= last {
		want = all[first-1 : last]
	}
	checkPage(t, "History after purge", got, want)
	// Paging backwards from below the first seq finds nothing.
	got, err = s.History(t.Context(), chat, store.HistoryQuery{Before: first, Limit: 10})
	if err != nil {
		t.Fatalf("History(%q, before %d): %v", chat, first, err)
	}
	checkPage(t, "History below the first seq", got, nil)
}

func testPurgeNewChat(t *testing.T, s store.Store) {
	mustPurge(t, s, "g:rt-new", time.Now(), 10, 0, 1)
	checkSeqs(t, s, "g:rt-new", nil, 1, 0)
}

func testPurgeByTime(t *testing.T, s store.Store) {
	all := makeMessages("g:rt-time", 1, 10)
	mustAppend(t, s, all)
	// Exactly seq 5's SentAt: 5 is not before it, so it stays.
	mustPurge(t, s, "g:rt-time", all[4].SentAt, 100, 4, 5)
	checkSeqs(t, s, "g:rt-time", all, 5, 10)
	// Nothing more is old enough.
	mustPurge(t, s, "g:rt-time", all[4].SentAt, 100, 0, 5)
	checkSeqs(t, s, "g:rt-time", all, 5, 10)
}

func testPurgeByLimit(t *testing.T, s store.Store) {
	all := makeMessages("g:rt-limit", 1, 10)
	mustAppend(t, s, all)
	future := time.Now().Add(time.Hour)
	mustPurge(t, s, "g:rt-limit", future, 3, 3, 4)
	checkSeqs(t, s, "g:rt-limit", all, 4, 10)
	mustPurge(t, s, "g:rt-limit", future, 3, 3, 7)
	checkSeqs(t, s, "g:rt-limit", all, 7, 10)
}

// A message sent late but stored early (its seq is lower) stops the purge:
// what stays is always one range ending at the last seq.
func testPurgeStopsAtFirstKept(t *testing.T, s store.Store) {
	all := makeMessages("g:rt-order", 1, 6)
	cutoff := all[5].SentAt.Add(time.Second)
	all[2].SentAt = cutoff.Add(time.Second)
	mustAppend(t, s, all)
	mustPurge(t, s, "g:rt-order", cutoff, 100, 2, 3)
	checkSeqs(t, s, "g:rt-order", all, 3, 6)
}

func testPurgeEverything(t *testing.T, s store.Store) {
	all := makeMessages("g:rt-all", 1, 8)
	mustAppend(t, s, all[:5])
	mustPurge(t, s, "g:rt-all", time.Now(), 100, 5, 6)
	checkSeqs(t, s, "g:rt-all", all, 6, 5)
	// Seqs continue after the purged ones.
	mustAppend(t, s, all[5:])
	checkSeqs(t, s, "g:rt-all", all, 6, 8)
	mustPurge(t, s, "g:rt-all", all[7].SentAt, 100, 2, 8)
	checkSeqs(t, s, "g:rt-all", all, 8, 8)
}

func testPurgeKeepsOtherChats(t *testing.T, s store.Store) {
	a := makeMessages("g:rt-a", 1, 5)
	ab := makeMessages("g:rt-ab", 1, 5) // shares a's prefix
	mustAppend(t, s, append(slices.Clone(a), ab...))
	mustPurge(t, s, "g:rt-a", time.Now(), 100, 5, 6)
	checkSeqs(t, s, "g:rt-a", a, 6, 5)
	checkSeqs(t, s, "g:rt-ab", ab, 1, 5)
}

// Reactions of kept messages stay; a change of a purged message finds no
// target.
func testPurgeAndChanges(t *testing.T, s store.Store) {
	const chat = "g:rt-changes"
	msgs := []store.Message{
		plain(chat, 1, "ann", "one"),
		plain(chat, 2, "bob", "two"),
		change(chat, 3, "bob", store.ChangeReact, 1, "👍", ""),
		change(chat, 4, "ann", store.ChangeReact, 2, "🎉", ""),
	}
	mustAppend(t, s, msgs)
	mustPurge(t, s, chat, msgs[1].SentAt, 100, 1, 2)
	got, err := s.History(t.Context(), chat, store.HistoryQuery{Limit: 10})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(got) != 3 || got[0].Seq != 2 {
		t.Fatalf("History after purge: seqs %v, want [2 3 4]", seqs(got))
	}
	want := []store.Reaction{{Emoji: "🎉", Users: []string{"ann"}}}
	if !slices.EqualFunc(got[0].Reactions, want, func(a, b store.Reaction) bool {
		return a.Emoji == b.Emoji && slices.Equal(a.Users, b.Users)
	}) {
		t.Fatalf("reactions of seq 2 = %+v, want %+v", got[0].Reactions, want)
	}
	err = s.AppendMessages(t.Context(), []store.Message{change(chat, 5, "ann", store.ChangeEdit, 1, "", "again")})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("edit of a purged message: %v, want ErrNotFound", err)
	}
}

func testListChats(t *testing.T, s store.Store) {
	l, ok := s.(store.ChatLister)
	if !ok {
		t.Skip("backend does not list chats")
	}
	chats := []string{"d:a:b", "g:x", "g:xy", "g:y"}
	for _, c := range chats {
		mustAppend(t, s, makeMessages(c, 1, 3))
	}
	// A chat emptied by retention has nothing left to list.
	mustPurge(t, s, "g:x", time.Now(), 100, 3, 4)
	var got []string
	after := ""
	for {
		page, err := l.ListChats(t.Context(), after, 3)
		if err != nil {
			t.Fatalf("ListChats(%q): %v", after, err)
		}
		got = append(got, page...)
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1]
	}
	want := slices.DeleteFunc(slices.Clone(chats), func(c string) bool { return c == "g:x" })
	if !slices.Equal(got, want) {
		t.Fatalf("ListChats = %v, want %v", got, want)
	}
}

func testRetentionSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	set := func(r store.RetentionSetting) {
		t.Helper()
		if err := s.SetRetention(ctx, r); err != nil {
			t.Fatalf("SetRetention(%+v): %v", r, err)
		}
	}
	check := func(chat string, want ...store.RetentionSetting) {
		t.Helper()
		got, err := s.Retention(ctx, chat)
		if err != nil {
			t.Fatalf("Retention(%q): %v", chat, err)
		}
		if len(got) != len(want) {
			t.Fatalf("Retention(%q) = %+v, want %+v", chat, got, want)
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Chat != w.Chat || g.UserID != w.UserID || g.Period != w.Period || !sameInstant(g.UpdatedAt, w.UpdatedAt) {
				t.Fatalf("Retention(%q)[%d] = %+v, want %+v", chat, i, g, w)
			}
		}
	}
	check("g:none")
	group := store.RetentionSetting{Chat: "g:1", Period: time.Hour, UpdatedAt: at}
	set(group)
	bob := store.RetentionSetting{Chat: "d:ann:bob", UserID: "bob", Period: 48 * time.Hour, UpdatedAt: at}
	ann := store.RetentionSetting{Chat: "d:ann:bob", UserID: "ann", Period: 1500 * time.Millisecond, UpdatedAt: at}
	set(bob)
	set(ann)
	check("g:1", group)
	check("d:ann:bob", ann, bob)
	group.Period, group.UpdatedAt = 2*time.Hour, at.Add(time.Second)
	set(group)
	check("g:1", group)

	chats, err := s.RetentionChats(ctx, "", 10)
	if err != nil || !slices.Equal(chats, []string{"d:ann:bob", "g:1"}) {
		t.Fatalf("RetentionChats = %v, %v; want [d:ann:bob g:1]", chats, err)
	}
	if chats, err = s.RetentionChats(ctx, "d:ann:bob", 10); err != nil || !slices.Equal(chats, []string{"g:1"}) {
		t.Fatalf("RetentionChats after d:ann:bob = %v, %v; want [g:1]", chats, err)
	}
	if chats, err = s.RetentionChats(ctx, "", 1); err != nil || !slices.Equal(chats, []string{"d:ann:bob"}) {
		t.Fatalf("RetentionChats limit 1 = %v, %v; want [d:ann:bob]", chats, err)
	}

	// Period 0 removes a setting.
	set(store.RetentionSetting{Chat: "d:ann:bob", UserID: "ann"})
	check("d:ann:bob", bob)
	set(store.RetentionSetting{Chat: "g:1"})
	check("g:1")
	if chats, err = s.RetentionChats(ctx, "", 10); err != nil || !slices.Equal(chats, []string{"d:ann:bob"}) {
		t.Fatalf("RetentionChats after removals = %v, %v; want [d:ann:bob]", chats, err)
	}
}

// testPurgedRestored: purging leaves the dedupe records of the purged
// messages behind, and writing the very same messages back (an archive
// import) is not a conflict; another message with one of their client
// ids still is.
func testPurgedRestored(t *testing.T, s store.Store) {
	all := makeMessages("g:rt-restore", 1, 4)
	mustAppend(t, s, all)
	mustPurge(t, s, "g:rt-restore", time.Now(), 100, 4, 5)
	mustAppend(t, s, all)
	got, err := s.History(t.Context(), "g:rt-restore", store.HistoryQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	checkPage(t, "History after the restore", got, all)
	other := makeMessages("g:rt-restore", 5, 5)
	other[0].CMID = all[0].CMID
	other[0].From = all[0].From
	if err := s.AppendMessages(t.Context(), other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a new message reusing a restored one's client id: %v, want ErrConflict", err)
	}
}
