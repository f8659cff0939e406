package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Edits, deletes and reactions are messages of their own whose change is
// applied to the target in the same write; these cases read the result
// back through History, the only way a client sees it.
func lifecycleTests() []testCase {
	return []testCase{
		{"EditReplacesBody", testEditReplacesBody},
		{"DeletePurgesEveryText", testDeletePurgesEveryText},
		{"DeleteIsIdempotent", testDeleteIsIdempotent},
		{"TombstoneIgnoresLaterChanges", testTombstoneIgnoresLaterChanges},
		{"ReactionsIdempotent", testReactionsIdempotent},
		{"ReactionsStayOnTheirMessage", testReactionsStayOnTheirMessage},
		{"BatchMixesMessageAndChange", testBatchMixesMessageAndChange},
		{"MissingTargetFailsBatch", testMissingTargetFailsBatch},
		{"InvalidChangeFailsBatch", testInvalidChangeFailsBatch},
		{"LastMessagesResolved", testLastMessagesResolved},
	}
}

// lcEpoch is the SentAt of seq 0 in these cases, one for the whole run so
// that a message built twice is the same message; well inside the dedupe
// window however long the run takes.
var lcEpoch = time.Now().Add(-time.Hour).Truncate(time.Millisecond)

func lcBase() time.Time { return lcEpoch }

// plain is an ordinary text message with a recognisable body.
func plain(chat string, seq uint64, from, text string) store.Message {
	return store.Message{
		Chat: chat, Seq: seq, ID: 1<<40 | seq, From: from,
		CMID: fmt.Sprintf("%s/plain-%d", chat, seq), Type: "text",
		Body: fmt.Appendf(nil, "%q", text), SentAt: lcBase().Add(time.Duration(seq) * time.Second),
	}
}

// change is a change message of kind on target; body is the new text of
// an edit and ignored otherwise.
func change(chat string, seq uint64, from string, kind store.ChangeKind, target uint64, emoji, body string) store.Message {
	m := store.Message{
		Chat: chat, Seq: seq, ID: 1<<40 | seq, From: from,
		CMID: fmt.Sprintf("%s/change-%d", chat, seq), Type: string(kind),
		SentAt: lcBase().Add(time.Duration(seq) * time.Second),
		Change: &store.Change{Kind: kind, Target: target, Emoji: emoji},
	}
	switch kind {
	case store.ChangeEdit:
		m.Body = fmt.Appendf(nil, "%q", body)
	case store.ChangeReact, store.ChangeUnreact:
		m.Type = "reaction"
	}
	return m
}

// resolved is m as History returns it after the given state.
func resolved(m store.Message, body []byte, edited, deleted time.Time, reactions ...store.Reaction) store.Message {
	m.Body, m.EditedAt, m.DeletedAt, m.Reactions = body, edited, deleted, reactions
	return m
}

func wholeChat(t *testing.T, s store.Store, chat string) []store.Message {
	t.Helper()
	got, err := s.History(t.Context(), chat, store.HistoryQuery{Limit: 1000})
	if err != nil {
		t.Fatalf("History(%q): %v", chat, err)
	}
	return got
}

func testEditReplacesBody(t *testing.T, s store.Store) {
	const chat = "d:lc-edit"
	m1, m2 := plain(chat, 1, "ann", "first"), plain(chat, 2, "bob", "tpyo")
	e3 := change(chat, 3, "bob", store.ChangeEdit, 2, "", "typo")
	e4 := change(chat, 4, "bob", store.ChangeEdit, 2, "", "typo!")
	mustAppend(t, s, []store.Message{m1, m2})
	mustAppend(t, s, []store.Message{e3})
	checkPage(t, "after one edit", wholeChat(t, s, chat), []store.Message{
		m1, resolved(m2, e3.Body, e3.SentAt, time.Time{}), e3,
	})
	mustAppend(t, s, []store.Message{e4})
	checkPage(t, "after two edits", wholeChat(t, s, chat), []store.Message{
		m1, resolved(m2, e4.Body, e4.SentAt, time.Time{}), e3, e4,
	})
	// A page that holds the edit but not its target still shows the edit.
	got, err := s.History(t.Context(), chat, store.HistoryQuery{After: 3, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	checkPage(t, "page after the target", got, []store.Message{e4})
}

func testDeletePurgesEveryText(t *testing.T, s store.Store) {
	const chat = "g:lc-delete"
	m1 := plain(chat, 1, "ann", "secret-original")
	m2 := plain(chat, 2, "bob", "unrelated")
	e3 := change(chat, 3, "ann", store.ChangeEdit, 1, "", "secret-edited")
	r4 := change(chat, 4, "bob", store.ChangeReact, 1, "👍", "")
	e5 := change(chat, 5, "ann", store.ChangeEdit, 1, "", "secret-again")
	d6 := change(chat, 6, "ann", store.ChangeDelete, 1, "", "")
	mustAppend(t, s, []store.Message{m1, m2})
	mustAppend(t, s, []store.Message{e3})
	mustAppend(t, s, []store.Message{r4, e5})
	mustAppend(t, s, []store.Message{d6})

	got := wholeChat(t, s, chat)
	for _, m := range got {
		if bytes.Contains(m.Body, []byte("secret")) {
			t.Fatalf("seq %d still holds %s after the delete of seq 1", m.Seq, m.Body)
		}
	}
	checkPage(t, "after the delete", got, []store.Message{
		resolved(m1, nil, time.Time{}, d6.SentAt),
		m2,
		resolved(e3, nil, time.Time{}, time.Time{}),
		r4,
		resolved(e5, nil, time.Time{}, time.Time{}),
		d6,
	})
}

func testDeleteIsIdempotent(t *testing.T, s store.Store) {
	const chat = "d:lc-redelete"
	m1 := plain(chat, 1, "ann", "bye")
	d2 := change(chat, 2, "ann", store.ChangeDelete, 1, "", "")
	d3 := change(chat, 3, "ann", store.ChangeDelete, 1, "", "")
	mustAppend(t, s, []store.Message{m1, d2})
	mustAppend(t, s, []store.Message{d3})
	// The first delete's time stays: a repeat changes nothing.
	checkPage(t, "after two deletes", wholeChat(t, s, chat), []store.Message{
		resolved(m1, nil, time.Time{}, d2.SentAt), d2, d3,
	})
}

func testTombstoneIgnoresLaterChanges(t *testing.T, s store.Store) {
	const chat = "d:lc-tombstone"
	m1 := plain(chat, 1, "ann", "gone")
	d2 := change(chat, 2, "ann", store.ChangeDelete, 1, "", "")
	e3 := change(chat, 3, "ann", store.ChangeEdit, 1, "", "secret-late")
	r4 := change(chat, 4, "bob", store.ChangeReact, 1, "🎉", "")
	mustAppend(t, s, []store.Message{m1, d2})
	mustAppend(t, s, []store.Message{e3, r4})
	checkPage(t, "changes after the delete", wholeChat(t, s, chat), []store.Message{
		resolved(m1, nil, time.Time{}, d2.SentAt), d2, resolved(e3, nil, time.Time{}, time.Time{}), r4,
	})
}

func testReactionsIdempotent(t *testing.T, s store.Store) {
	const chat = "g:lc-react"
	m1 := plain(chat, 1, "ann", "party?")
	batches := [][]store.Message{
		{m1},
		{change(chat, 2, "zed", store.ChangeReact, 1, "👍", "")},
		{change(chat, 3, "bob", store.ChangeReact, 1, "👍", "")},
		{change(chat, 4, "zed", store.ChangeReact, 1, "👍", "")}, // again: no second entry
		{change(chat, 5, "bob", store.ChangeReact, 1, "❤️", "")},
		{change(chat, 6, "amy", store.ChangeReact, 1, "❤️", "")},
		{change(chat, 7, "amy", store.ChangeUnreact, 1, "❤️", "")},
		{change(chat, 8, "amy", store.ChangeUnreact, 1, "❤️", "")}, // again: nothing to remove
		{change(chat, 9, "cat", store.ChangeUnreact, 1, "👍", "")},  // never reacted
	}
	var want []store.Message
	for _, b := range batches {
		mustAppend(t, s, b)
		want = append(want, b...)
	}
	// Emoji in byte order ("❤️" is E2..., "👍" F0...), users sorted.
	want[0] = resolved(m1, m1.Body, time.Time{}, time.Time{},
		store.Reaction{Emoji: "❤️", Users: []string{"bob"}},
		store.Reaction{Emoji: "👍", Users: []string{"bob", "zed"}})
	checkPage(t, "after the reactions", wholeChat(t, s, chat), want)

	// Removing the last user of an emoji removes the emoji.
	mustAppend(t, s, []store.Message{change(chat, 10, "bob", store.ChangeUnreact, 1, "❤️", "")})
	got, err := s.History(t.Context(), chat, store.HistoryQuery{Before: 2, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkPage(t, "after the last ❤️ went", got, []store.Message{resolved(m1, m1.Body, time.Time{}, time.Time{},
		store.Reaction{Emoji: "👍", Users: []string{"bob", "zed"}})})
}

func testReactionsStayOnTheirMessage(t *testing.T, s store.Store) {
	// Chat ids where one is a prefix of the other, reactions on
	// neighbouring seqs, read through pages that cut between them.
	chats := []string{"g:lc-r", "g:lc-r2"}
	want := map[string][]store.Message{}
	for ci, chat := range chats {
		var msgs []store.Message
		for seq := uint64(1); seq <= 4; seq++ {
			msgs = append(msgs, plain(chat, seq, "ann", fmt.Sprintf("m%d", seq)))
		}
		r5 := change(chat, 5, "bob", store.ChangeReact, 2, "👀", "")
		r6 := change(chat, 6, "amy", store.ChangeReact, uint64(3+ci), "🔥", "")
		mustAppend(t, s, append(msgs, r5, r6))
		w := append([]store.Message(nil), msgs...)
		w[1].Reactions = []store.Reaction{{Emoji: "👀", Users: []string{"bob"}}}
		w[2+ci].Reactions = []store.Reaction{{Emoji: "🔥", Users: []string{"amy"}}}
		want[chat] = append(w, r5, r6)
	}
	for _, chat := range chats {
		all := want[chat]
		checkHistory(t, s, chat, all, []historyCase{
			{store.HistoryQuery{Limit: 100}, 1, 6},
			{store.HistoryQuery{After: 1, Limit: 1}, 2, 2},
			{store.HistoryQuery{After: 2, Limit: 2}, 3, 4},
			{store.HistoryQuery{Before: 4, Limit: 1}, 3, 3},
			{store.HistoryQuery{Before: 6, Limit: 3}, 3, 5},
		})
	}
}

func testBatchMixesMessageAndChange(t *testing.T, s store.Store) {
	const chat = "g:lc-mixed"
	m1 := plain(chat, 1, "ann", "hello")
	e2 := change(chat, 2, "ann", store.ChangeEdit, 1, "", "hello all")
	r3 := change(chat, 3, "bob", store.ChangeReact, 1, "👋", "")
	m4 := plain(chat, 4, "bob", "secret-oops")
	r5 := change(chat, 5, "ann", store.ChangeReact, 4, "😮", "")
	d6 := change(chat, 6, "bob", store.ChangeDelete, 4, "", "")
	other := plain("g:lc-mixed-other", 1, "cat", "elsewhere")
	mustAppend(t, s, []store.Message{m1, e2, r3, other, m4, r5, d6})
	checkPage(t, "one batch", wholeChat(t, s, chat), []store.Message{
		resolved(m1, e2.Body, e2.SentAt, time.Time{}, store.Reaction{Emoji: "👋", Users: []string{"bob"}}),
		e2, r3,
		resolved(m4, nil, time.Time{}, d6.SentAt),
		r5, d6,
	})
	checkPage(t, "the other chat", wholeChat(t, s, "g:lc-mixed-other"), []store.Message{other})
}

func testMissingTargetFailsBatch(t *testing.T, s store.Store) {
	const chat = "d:lc-missing"
	mustAppend(t, s, []store.Message{plain(chat, 1, "ann", "one"), plain(chat, 2, "ann", "two")})
	// Another chat has a seq 3, which chat lacks.
	mustAppend(t, s, []store.Message{plain("d:lc-missing-x", 1, "ann", "x1"), plain("d:lc-missing-x", 2, "ann", "x2"),
		plain("d:lc-missing-x", 3, "ann", "x3")})
	// The batch's own message, and a change of it, go with the bad change:
	// a seq not yet written or none at all.
	for _, missing := range []uint64{9, 0} {
		err := s.AppendMessages(t.Context(), []store.Message{
			plain(chat, 3, "bob", "three"),
			change(chat, 4, "bob", store.ChangeReact, 3, "👍", ""),
			change(chat, 5, "ann", store.ChangeEdit, missing, "", "nine"),
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AppendMessages with a change of seq %d: err = %v, want ErrNotFound", missing, err)
		}
	}
	// A seq below the change's that is stored in another chat only (a gap
	// only a test makes).
	if err := s.AppendMessages(t.Context(), []store.Message{change(chat, 9, "ann", store.ChangeDelete, 3, "", "")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AppendMessages with a change of seq 3, stored in another chat only: err = %v, want ErrNotFound", err)
	}
	if last, err := s.LastSeq(t.Context(), chat); err != nil || last != 2 {
		t.Fatalf("LastSeq after the refused batch = %d, %v; want 2", last, err)
	}
	if _, err := s.LookupDedupe(t.Context(), "bob", chat+"/plain-3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupDedupe of the refused batch's message: %v, want ErrNotFound", err)
	}
	checkPage(t, "after the refused batch", wholeChat(t, s, chat), []store.Message{plain(chat, 1, "ann", "one"), plain(chat, 2, "ann", "two")})
	// The seqs stay free for the writer's next batch.
	m3, r4 := plain(chat, 3, "bob", "three"), change(chat, 4, "bob", store.ChangeReact, 3, "👍", "")
	mustAppend(t, s, []store.Message{m3, r4})
	m3.Reactions = []store.Reaction{{Emoji: "👍", Users: []string{"bob"}}}
	checkPage(t, "after the retry", wholeChat(t, s, chat)[2:], []store.Message{m3, r4})
}

func testInvalidChangeFailsBatch(t *testing.T, s store.Store) {
	const chat = "d:lc-invalid"
	e2 := change(chat, 2, "ann", store.ChangeEdit, 1, "", "uno")
	mustAppend(t, s, []store.Message{plain(chat, 1, "ann", "one"), e2})
	bad := []store.Message{
		change(chat, 3, "ann", store.ChangeEdit, 2, "", "an edit of an edit"),
		change(chat, 3, "ann", store.ChangeKind("pin"), 1, "", ""),
		change(chat, 3, "ann", store.ChangeReact, 1, "", ""),
		change(chat, 3, "ann", store.ChangeDelete, 1, "👍", ""),
	}
	for _, m := range bad {
		err := s.AppendMessages(t.Context(), []store.Message{m})
		if !errors.Is(err, store.ErrInvalidChange) {
			t.Fatalf("AppendMessages(%+v): err = %v, want ErrInvalidChange", *m.Change, err)
		}
	}
	m1 := plain(chat, 1, "ann", "one")
	checkPage(t, "after the refusals", wholeChat(t, s, chat), []store.Message{resolved(m1, e2.Body, e2.SentAt, time.Time{}), e2})
}

func testLastMessagesResolved(t *testing.T, s store.Store) {
	edited, deleted := "d:lc-last-e", "d:lc-last-d"
	mustAppend(t, s, []store.Message{
		plain(edited, 1, "ann", "draft"), plain(deleted, 1, "ann", "secret-last"),
	})
	// The change message is the chat's newest: the target is one before.
	mustAppend(t, s, []store.Message{plain(edited, 2, "bob", "reply")})
	mustAppend(t, s, []store.Message{change(edited, 3, "bob", store.ChangeEdit, 2, "", "better reply")})
	mustAppend(t, s, []store.Message{change(deleted, 2, "ann", store.ChangeDelete, 1, "", "")})
	got, err := s.LastMessages(t.Context(), []string{edited, deleted})
	if err != nil {
		t.Fatal(err)
	}
	if m := got[edited]; m.Change == nil || m.Change.Target != 2 || string(m.Body) != `"better reply"` {
		t.Fatalf("LastMessages[%s] = %+v, want the edit of seq 2", edited, m)
	}
	page, err := s.History(t.Context(), deleted, store.HistoryQuery{Before: 2, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || !page[0].Deleted() || len(page[0].Body) != 0 {
		t.Fatalf("History of the deleted message = %+v, want a tombstone", page)
	}
}

// changeDiff adds the lifecycle fields to messageDiff.
func changeDiff(got, want store.Message) []string {
	var d []string
	if !reflect.DeepEqual(got.Change, want.Change) {
		d = append(d, fmt.Sprintf("Change = %+v, want %+v", got.Change, want.Change))
	}
	if got.EditedAt.IsZero() != want.EditedAt.IsZero() || !sameInstant(got.EditedAt, want.EditedAt) {
		d = append(d, fmt.Sprintf("EditedAt = %v, want %v", got.EditedAt, want.EditedAt))
	}
	if got.DeletedAt.IsZero() != want.DeletedAt.IsZero() || !sameInstant(got.DeletedAt, want.DeletedAt) {
		d = append(d, fmt.Sprintf("DeletedAt = %v, want %v", got.DeletedAt, want.DeletedAt))
	}
	if len(got.Reactions) != 0 || len(want.Reactions) != 0 {
		if !reflect.DeepEqual(got.Reactions, want.Reactions) {
			d = append(d, fmt.Sprintf("Reactions = %v, want %v", got.Reactions, want.Reactions))
		}
	}
	return d
}

// RunReopen checks that applied changes are what a store reads after it is
// closed and opened again (the state lives in the data, not in a cache).
// open must return a store over the same data every time it is called; the
// case closes each store before the next open.
func RunReopen(t *testing.T, open func(t *testing.T) store.Store) {
	const chat = "g:lc-reopen"
	m1, m2 := plain(chat, 1, "ann", "secret-before"), plain(chat, 2, "bob", "hi")
	e3 := change(chat, 3, "bob", store.ChangeEdit, 2, "", "hi all")
	r4 := change(chat, 4, "ann", store.ChangeReact, 2, "👍", "")
	d5 := change(chat, 5, "ann", store.ChangeDelete, 1, "", "")
	s := open(t)
	mustAppend(t, s, []store.Message{m1, m2, e3})
	mustAppend(t, s, []store.Message{r4, d5})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t)
	checkPage(t, "after reopen", wholeChat(t, s, chat), []store.Message{
		resolved(m1, nil, time.Time{}, d5.SentAt),
		resolved(m2, e3.Body, e3.SentAt, time.Time{}, store.Reaction{Emoji: "👍", Users: []string{"ann"}}),
		e3, r4, d5,
	})
	// And the store goes on applying changes to what it read back.
	u6 := change(chat, 6, "ann", store.ChangeUnreact, 2, "👍", "")
	mustAppend(t, s, []store.Message{u6})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
