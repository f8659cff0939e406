package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/store"
)

// conflictTests check that the store is the fence between two writers that
// both believe they own a chat (a deposed cluster node and its successor):
// a taken (chat, seq) or a live (sender, cmid) refuses the append with
// store.ErrConflict, whichever writer comes second, and never stores a
// duplicate.
func conflictTests() []testCase {
	return []testCase{
		{"SameSeqSequential", testSameSeqSequential},
		{"SameSeqRace", testSameSeqRace},
		{"SameCMIDSequential", testSameCMIDSequential},
		{"SameCMIDRace", testSameCMIDRace},
		{"TakenSeqStoresNoneOfTheBatch", testTakenSeqStoresNone},
		{"LiveCMIDStoresNoneOfTheBatch", testLiveCMIDStoresNone},
	}
}

// raceRounds makes a lost race likely to show: each round releases its two
// writers together.
const raceRounds = 50

// writerMessages is makeMessages from another writer: same seqs, its own
// sender, cmids, ids and bodies.
func writerMessages(chat string, first, last uint64, writer string) []store.Message {
	msgs := makeMessages(chat, first, last)
	for i := range msgs {
		m := &msgs[i]
		m.From = writer
		m.CMID = fmt.Sprintf("%s/%s/cm-%d", writer, chat, m.Seq)
		m.ID |= uint64(len(writer)) << 24
		m.Body = fmt.Appendf(nil, `{"writer":%q,"n":%d}`, writer, m.Seq)
	}
	return msgs
}

func expectConflict(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("%s: err = %v, want store.ErrConflict", what, err)
	}
}

// appendRace appends each batch on its own goroutine, released together, and
// returns the errors in batch order.
func appendRace(t *testing.T, s store.Store, batches ...[]store.Message) []error {
	t.Helper()
	errs := make([]error, len(batches))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Go(func() {
			<-start
			errs[i] = s.AppendMessages(t.Context(), b)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// winner checks that exactly one of errs is nil and every other one is a
// conflict, and returns the winner's index.
func winner(t *testing.T, round int, errs []error) int {
	t.Helper()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("round %d: writers %d and %d both succeeded", round, won, i)
		case err == nil:
			won = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("round %d: writer %d: err = %v, want nil or store.ErrConflict", round, i, err)
		}
	}
	if won < 0 {
		t.Fatalf("round %d: no writer succeeded: %v", round, errs)
	}
	return won
}

func testSameSeqSequential(t *testing.T, s store.Store) {
	const chat = "g:seq-seq"
	first := writerMessages(chat, 1, 3, "old-owner")
	mustAppend(t, s, first)
	second := writerMessages(chat, 3, 4, "new-owner")
	expectConflict(t, "AppendMessages over a stored seq", s.AppendMessages(t.Context(), second))

	checkHistory(t, s, chat, first, []historyCase{{store.HistoryQuery{Limit: 10}, 1, 3}})
	if last, err := s.LastSeq(t.Context(), chat); err != nil || last != 3 {
		t.Fatalf("LastSeq = %d, %v; want 3", last, err)
	}
	for _, m := range second {
		checkNoRef(t, s, m.From, m.CMID)
	}
	checkRef(t, s, first[2].From, first[2].CMID, refOf(first[2]))
}

func testSameSeqRace(t *testing.T, s store.Store) {
	for round := range raceRounds {
		chat := fmt.Sprintf("g:seq-race-%d", round)
		batches := [][]store.Message{
			writerMessages(chat, 1, 2, "node-a"),
			writerMessages(chat, 1, 2, "node-b"),
		}
		won := winner(t, round, appendRace(t, s, batches...))
		checkHistory(t, s, chat, batches[won], []historyCase{{store.HistoryQuery{Limit: 10}, 1, 2}})
		if last, err := s.LastSeq(t.Context(), chat); err != nil || last != 2 {
			t.Fatalf("round %d: LastSeq = %d, %v; want 2", round, last, err)
		}
		for _, m := range batches[won] {
			checkRef(t, s, m.From, m.CMID, refOf(m))
		}
		for _, m := range batches[1-won] {
			checkNoRef(t, s, m.From, m.CMID)
		}
	}
}

func testSameCMIDSequential(t *testing.T, s store.Store) {
	first := writerMessages("g:cmid-a", 1, 1, "alice")
	mustAppend(t, s, first)
	again := writerMessages("g:cmid-b", 1, 1, "alice")
	again[0].CMID = first[0].CMID
	expectConflict(t, "AppendMessages of a stored (sender, cmid)", s.AppendMessages(t.Context(), again))

	checkRef(t, s, "alice", first[0].CMID, refOf(first[0]))
	checkHistory(t, s, "g:cmid-b", nil, []historyCase{{store.HistoryQuery{Limit: 10}, 1, 0}})
	if last, err := s.LastSeq(t.Context(), "g:cmid-b"); err != nil || last != 0 {
		t.Fatalf("LastSeq of the refused chat = %d, %v; want 0", last, err)
	}
}

// Two nodes store one retry of the same (sender, cmid): the client sent it
// to one, reconnected to the other and sent it again.
func testSameCMIDRace(t *testing.T, s store.Store) {
	for round := range raceRounds {
		cmid := fmt.Sprintf("retry-%d", round)
		chats := []string{fmt.Sprintf("g:cmid-race-a-%d", round), fmt.Sprintf("g:cmid-race-b-%d", round)}
		batches := make([][]store.Message, len(chats))
		for i, chat := range chats {
			batches[i] = writerMessages(chat, 1, 1, "alice")
			batches[i][0].CMID = cmid
		}
		won := winner(t, round, appendRace(t, s, batches...))
		checkRef(t, s, "alice", cmid, refOf(batches[won][0]))
		checkHistory(t, s, chats[won], batches[won], []historyCase{{store.HistoryQuery{Limit: 10}, 1, 1}})
		lost := chats[1-won]
		checkHistory(t, s, lost, nil, []historyCase{{store.HistoryQuery{Limit: 10}, 1, 0}})
		if last, err := s.LastSeq(t.Context(), lost); err != nil || last != 0 {
			t.Fatalf("round %d: LastSeq of the losing chat = %d, %v; want 0", round, last, err)
		}
	}
}

// A batch whose last message has a taken seq stores none of its messages
// nor their dedupe records. The chat is one partition for every backend, so
// even a backend without cross-partition transactions must pass.
func testTakenSeqStoresNone(t *testing.T, s store.Store) {
	const chat = "g:taken"
	stored := writerMessages(chat, 1, 2, "old-owner")
	mustAppend(t, s, stored)
	late := writerMessages(chat, 5, 5, "new-owner")
	mustAppend(t, s, late)

	batch := writerMessages(chat, 3, 5, "old-owner")
	expectConflict(t, "AppendMessages with a taken last seq", s.AppendMessages(t.Context(), batch))
	want := append(append([]store.Message(nil), stored...), late...)
	got, err := s.History(t.Context(), chat, store.HistoryQuery{Limit: 10})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	checkPage(t, "History after the refused batch", got, want)
	for _, m := range batch {
		checkNoRef(t, s, m.From, m.CMID)
	}
}

// A batch in which one message repeats a live (sender, cmid) stores none of
// its messages nor their dedupe records.
func testLiveCMIDStoresNone(t *testing.T, s store.Store) {
	const chat = "g:live-cmid"
	first := writerMessages(chat, 1, 1, "alice")
	mustAppend(t, s, first)

	batch := writerMessages(chat, 2, 4, "alice")
	batch[2].CMID = first[0].CMID
	expectConflict(t, "AppendMessages repeating a live cmid", s.AppendMessages(t.Context(), batch))
	checkHistory(t, s, chat, first, []historyCase{{store.HistoryQuery{Limit: 10}, 1, 1}})
	if last, err := s.LastSeq(t.Context(), chat); err != nil || last != 1 {
		t.Fatalf("LastSeq = %d, %v; want 1", last, err)
	}
	for _, m := range batch[:2] {
		checkNoRef(t, s, m.From, m.CMID)
	}
	checkRef(t, s, "alice", first[0].CMID, refOf(first[0]))
}
