package receipts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/store"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

const hangTimeout = 20 * time.Second

// countingStore is the real pebble store counting AdvanceCursors calls.
type countingStore struct {
	*pebblestore.Store
	mu    sync.Mutex
	calls []advanceCall
	// gate, when set, holds every AdvanceCursors until it is closed,
	// after signalling entered.
	gate, entered chan struct{}
}

type advanceCall struct {
	uid, chat       string
	delivered, read uint64
}

func (s *countingStore) AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (store.ChatState, bool, error) {
	if ctx.Err() != nil || at.IsZero() {
		panic("AdvanceCursors without a live context or a time")
	}
	s.mu.Lock()
	s.calls = append(s.calls, advanceCall{uid, chat, delivered, read})
	s.mu.Unlock()
	if s.gate != nil {
		s.entered <- struct{}{}
		<-s.gate
	}
	return s.Store.AdvanceCursors(ctx, uid, chat, delivered, read, at)
}

func (s *countingStore) takeCalls() []advanceCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.calls
	s.calls = nil
	return out
}

// sink records published events as the JSON a client would receive.
type sink struct {
	mu  sync.Mutex
	got map[string][]json.RawMessage // user -> events
	n   chan struct{}
}

func newSink() *sink {
	return &sink{got: map[string][]json.RawMessage{}, n: make(chan struct{}, 1<<16)}
}

func (s *sink) Event(uid string, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.got[uid] = append(s.got[uid], raw)
	s.mu.Unlock()
	s.n <- struct{}{}
}

// take returns and forgets every user's events.
func (s *sink) take() map[string][]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = map[string][]json.RawMessage{}
	return out
}

// logBuffer captures warnings and errors.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type fixture struct {
	t    *testing.T
	st   *countingStore
	ev   *sink
	logs *logBuffer
	c    *Coalescer
}

// newFixture starts a Coalescer whose interval never fires unless opts says
// otherwise: tests flush by hand.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	ps, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	f := &fixture{t: t, st: &countingStore{Store: ps}, ev: newSink(), logs: &logBuffer{}}
	if opts.Interval == 0 {
		opts.Interval = time.Hour
	}
	opts.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f.c = New(f.st, StoreMembers(ps), f.ev, opts)
	t.Cleanup(func() {
		f.c.Close()
		if err := ps.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return f
}

func (f *fixture) join(chat string, users ...string) {
	f.t.Helper()
	for _, u := range users {
		if err := f.st.JoinChat(context.Background(), u, chat, time.Now()); err != nil {
			f.t.Fatalf("JoinChat: %v", err)
		}
	}
}

func (f *fixture) group(gid string, users ...string) string {
	f.t.Helper()
	ms := make([]store.Member, len(users))
	for i, u := range users {
		ms[i] = store.Member{GroupID: gid, UserID: u, Role: store.RoleMember, JoinedAt: time.Now()}
	}
	ms[0].Role = store.RoleOwner
	if err := f.st.CreateGroup(context.Background(), store.Group{ID: gid, Name: gid, CreatedBy: users[0], CreatedAt: time.Now()}, ms); err != nil {
		f.t.Fatalf("CreateGroup: %v", err)
	}
	chat := "g:" + gid
	f.join(chat, users...)
	return chat
}

func (f *fixture) state(uid, chat string) store.ChatState {
	f.t.Helper()
	st, err := f.st.ChatState(context.Background(), uid, chat)
	if err != nil {
		f.t.Fatalf("ChatState: %v", err)
	}
	return st
}

// markRead does what chat.Service.MarkRead does: store, then hand on.
func (f *fixture) markRead(uid, chat string, seq uint64) {
	f.t.Helper()
	if _, _, err := f.st.Store.AdvanceCursors(context.Background(), uid, chat, 0, seq, time.Now()); err != nil {
		f.t.Fatalf("AdvanceCursors: %v", err)
	}
	f.c.Read(uid, chat, seq)
}

func receipt(t *testing.T, raw json.RawMessage) Receipt {
	t.Helper()
	var r Receipt
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || r.Type != "receipt" {
		t.Fatalf("not a receipt: %s (%v)", raw, err)
	}
	return r
}

func groupReceipts(t *testing.T, raw json.RawMessage) Receipts {
	t.Helper()
	var r Receipts
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || r.Type != "receipts" {
		t.Fatalf("not a receipts event: %s (%v)", raw, err)
	}
	return r
}

// TestDirectChatCoalescing: a hundred PUBACKs in one interval are one store
// write with the highest seq and one receipt to each of the two users.
func TestDirectChatCoalescing(t *testing.T) {
	f := newFixture(t, Options{})
	const chat = "d:alice:bob"
	f.join(chat, "alice", "bob")
	seqs := make([]uint64, 100)
	for i := range seqs {
		seqs[i] = uint64(i + 1)
	}
	rand.Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
	for _, s := range seqs {
		f.c.Delivered("bob", chat, s)
	}
	f.c.flush()

	if calls := f.st.takeCalls(); len(calls) != 1 || calls[0] != (advanceCall{"bob", chat, 100, 0}) {
		t.Fatalf("store calls %+v", calls)
	}
	if st := f.state("bob", chat); st.DeliveredSeq != 100 || st.ReadSeq != 0 {
		t.Fatalf("bob's state %+v", st)
	}
	got := f.ev.take()
	if len(got) != 2 || len(got["alice"]) != 1 || len(got["bob"]) != 1 {
		t.Fatalf("events %s", fmt.Sprint(got))
	}
	for _, u := range []string{"alice", "bob"} {
		if r := receipt(t, got[u][0]); r != (Receipt{Type: "receipt", Chat: chat, User: "bob", DeliveredSeq: 100}) {
			t.Fatalf("%s got %+v", u, r)
		}
		if strings.Contains(string(got[u][0]), "read_seq") {
			t.Fatalf("a delivered receipt names a read cursor: %s", got[u][0])
		}
	}

	// Never backwards: an older PUBACK (a resend) is stored as a no-op and
	// announced to nobody.
	f.c.Delivered("bob", chat, 40)
	f.c.flush()
	if st := f.state("bob", chat); st.DeliveredSeq != 100 {
		t.Fatalf("delivered went back: %+v", st)
	}
	if got := f.ev.take(); len(got) != 0 {
		t.Fatalf("events for a cursor that did not move: %v", got)
	}

	// A read: already stored by MarkRead, announced with only read_seq.
	f.markRead("bob", chat, 60)
	f.c.flush()
	got = f.ev.take()
	for _, u := range []string{"alice", "bob"} {
		if len(got[u]) != 1 {
			t.Fatalf("%s got %d events", u, len(got[u]))
		}
		if r := receipt(t, got[u][0]); r != (Receipt{Type: "receipt", Chat: chat, User: "bob", ReadSeq: 60}) {
			t.Fatalf("%s got %+v", u, r)
		}
	}

	f.st.takeCalls()

	// Both users move in one interval: one receipt each, to each.
	f.c.Delivered("alice", chat, 7)
	f.c.Delivered("bob", chat, 101)
	f.markRead("bob", chat, 101)
	f.c.flush()
	got = f.ev.take()
	for _, u := range []string{"alice", "bob"} {
		if len(got[u]) != 2 {
			t.Fatalf("%s got %d events: %s", u, len(got[u]), got[u])
		}
		rs := []Receipt{receipt(t, got[u][0]), receipt(t, got[u][1])}
		slices.SortFunc(rs, func(a, b Receipt) int { return strings.Compare(a.User, b.User) })
		if rs[0] != (Receipt{Type: "receipt", Chat: chat, User: "alice", DeliveredSeq: 7}) ||
			rs[1] != (Receipt{Type: "receipt", Chat: chat, User: "bob", DeliveredSeq: 101, ReadSeq: 101}) {
			t.Fatalf("%s got %+v", u, rs)
		}
	}
	if n := len(f.st.takeCalls()); n != 2 {
		t.Fatalf("%d store calls for two (user, chat) pairs", n)
	}

	// Notes to self: one recipient.
	f.join("d:alice:alice", "alice")
	f.c.Delivered("alice", "d:alice:alice", 3)
	f.c.flush()
	if got := f.ev.take(); len(got) != 1 || len(got["alice"]) != 1 {
		t.Fatalf("self chat events %v", got)
	}
	if logs := f.logs.String(); logs != "" {
		t.Fatalf("unexpected logs: %s", logs)
	}
}

// TestGroupCoalescing: every member gets one event per interval listing
// every member whose cursor moved, with their latest cursors.
func TestGroupCoalescing(t *testing.T) {
	f := newFixture(t, Options{})
	members := []string{"alice", "bob", "carol", "dave", "erin"}
	chat := f.group("team", members...)
	f.markRead("erin", chat, 1) // before the interval: only its value shows below
	f.c.flush()
	f.ev.take()
	f.st.takeCalls()

	for s := uint64(1); s <= 50; s++ {
		f.c.Delivered("bob", chat, s)
		f.c.Delivered("carol", chat, s/2+1)
	}
	f.markRead("dave", chat, 9)
	f.markRead("dave", chat, 12)
	f.c.Delivered("erin", chat, 50)
	f.c.Delivered("mallory", chat, 50) // not a member: no list entry, ignored
	f.c.flush()

	calls := f.st.takeCalls()
	if len(calls) != 5 {
		t.Fatalf("store calls %+v, want one per (user, chat)", calls)
	}
	got := f.ev.take()
	want := Receipts{Type: "receipts", Chat: chat, Receipts: []Entry{
		{User: "bob", DeliveredSeq: 50},
		{User: "carol", DeliveredSeq: 26},
		{User: "dave", ReadSeq: 12},
		{User: "erin", DeliveredSeq: 50, ReadSeq: 1},
	}}
	if len(got) != len(members) {
		t.Fatalf("events for %d users, want %d: %v", len(got), len(members), got)
	}
	for _, m := range members {
		if len(got[m]) != 1 {
			t.Fatalf("%s got %d events", m, len(got[m]))
		}
		if r := groupReceipts(t, got[m][0]); !slices.Equal(r.Receipts, want.Receipts) || r.Chat != chat {
			t.Fatalf("%s got %+v, want %+v", m, r, want)
		}
	}

	// Cursors that did not move produce nothing; a partial move lists only
	// the mover, with both its cursors.
	f.c.Delivered("bob", chat, 10)
	f.c.Delivered("carol", chat, 30)
	f.c.flush()
	got = f.ev.take()
	for _, m := range members {
		if len(got[m]) != 1 {
			t.Fatalf("%s got %d events", m, len(got[m]))
		}
		r := groupReceipts(t, got[m][0])
		if len(r.Receipts) != 1 || r.Receipts[0] != (Entry{User: "carol", DeliveredSeq: 30}) {
			t.Fatalf("%s got %+v", m, r)
		}
	}
	if logs := f.logs.String(); logs != "" {
		t.Fatalf("unexpected logs: %s", logs)
	}
}

// TestLargeGroupOneEventPerMemberPerInterval: 500 members each PUBACKing
// 20 messages cost each member one event per interval, not 10000.
func TestLargeGroupOneEventPerMemberPerInterval(t *testing.T) {
	f := newFixture(t, Options{})
	members := make([]string, 500)
	for i := range members {
		members[i] = fmt.Sprintf("u%03d", i)
	}
	chat := f.group("big", members...)
	for s := uint64(1); s <= 20; s++ {
		for _, m := range members[1:] {
			f.c.Delivered(m, chat, s)
		}
	}
	f.c.flush()
	if n := len(f.st.takeCalls()); n != 499 {
		t.Fatalf("%d store calls", n)
	}
	got := f.ev.take()
	for _, m := range members {
		if len(got[m]) != 1 {
			t.Fatalf("%s got %d events", m, len(got[m]))
		}
	}
	if r := groupReceipts(t, got["u000"][0]); len(r.Receipts) != 499 || r.Receipts[0] != (Entry{User: "u001", DeliveredSeq: 20}) {
		t.Fatalf("event lists %d entries, first %+v", len(r.Receipts), r.Receipts[0])
	}
}

// TestFlushesOnItsOwn: the interval drives flushes without help.
func TestFlushesOnItsOwn(t *testing.T) {
	f := newFixture(t, Options{Interval: 10 * time.Millisecond})
	f.join("d:alice:bob", "alice", "bob")
	f.c.Delivered("bob", "d:alice:bob", 1)
	for range 2 {
		select {
		case <-f.ev.n:
		case <-time.After(hangTimeout):
			t.Fatal("no event without an explicit flush")
		}
	}
	if st := f.state("bob", "d:alice:bob"); st.DeliveredSeq != 1 {
		t.Fatalf("state %+v", st)
	}
}

// TestCloseFlushes: Close applies and publishes what is pending, is
// idempotent, and ignores later moves.
func TestCloseFlushes(t *testing.T) {
	f := newFixture(t, Options{})
	f.join("d:alice:bob", "alice", "bob")
	f.c.Delivered("bob", "d:alice:bob", 4)
	f.c.Close()
	if st := f.state("bob", "d:alice:bob"); st.DeliveredSeq != 4 {
		t.Fatalf("state after Close %+v", st)
	}
	if got := f.ev.take(); len(got["alice"]) != 1 || len(got["bob"]) != 1 {
		t.Fatalf("events after Close %v", got)
	}
	f.c.Delivered("bob", "d:alice:bob", 5)
	f.c.Close()
	if st := f.state("bob", "d:alice:bob"); st.DeliveredSeq != 4 {
		t.Fatalf("a move after Close was applied: %+v", st)
	}
}

// TestMaxEvents: the events of one flush are capped and the excess logged.
func TestMaxEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, Options{MaxEvents: 3, Metrics: metrics.NewReceipts(reg)})
	for _, u := range []string{"bob", "carol", "dave"} {
		f.join("d:alice:"+u, "alice", u)
		f.c.Delivered(u, "d:alice:"+u, 1)
	}
	f.c.flush()
	total := 0
	for _, evs := range f.ev.take() {
		total += len(evs)
	}
	if total != 3 {
		t.Fatalf("%d events published with a cap of 3", total)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "events dropped") || !strings.Contains(logs, "dropped=3") {
		t.Fatalf("excess not logged: %q", logs)
	}
	// Three moves stored; each announces to both users of its chat, so
	// three events went out and three were dropped.
	want := `
# HELP mqchat_receipts_dropped_total Cursor moves (kind=move) or events (kind=event) dropped because one interval had too many; clients recover cursors from the chat list.
# TYPE mqchat_receipts_dropped_total counter
mqchat_receipts_dropped_total{kind="event"} 3
# HELP mqchat_receipts_events_total Receipt events published to members' devices.
# TYPE mqchat_receipts_events_total counter
mqchat_receipts_events_total 3
# HELP mqchat_receipts_moves_total Delivered and read cursor moves stored and announced.
# TYPE mqchat_receipts_moves_total counter
mqchat_receipts_moves_total 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"mqchat_receipts_dropped_total", "mqchat_receipts_events_total", "mqchat_receipts_moves_total"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "carol", "dave"} {
		if st := f.state(u, "d:alice:"+u); st.DeliveredSeq != 1 {
			t.Fatalf("%s: cursor not stored: %+v", u, st)
		}
	}
}

// TestMaxPending: reaching the cap flushes at once; moves arriving while
// the cap is still reached are dropped and logged.
func TestMaxPending(t *testing.T) {
	f := newFixture(t, Options{MaxPending: 2})
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	for _, u := range users {
		f.join("d:"+u+":zz", u, "zz")
	}
	f.st.gate, f.st.entered = make(chan struct{}), make(chan struct{}, 16)
	f.c.Delivered("u1", "d:u1:zz", 1)
	f.c.Delivered("u2", "d:u2:zz", 1) // full: the loop flushes now...
	select {
	case <-f.st.entered: // ...and is held inside the store
	case <-time.After(hangTimeout):
		t.Fatal("reaching MaxPending did not flush")
	}
	f.c.Delivered("u3", "d:u3:zz", 1)
	f.c.Delivered("u4", "d:u4:zz", 1)
	f.c.Delivered("u5", "d:u5:zz", 1) // past the cap: dropped
	f.c.Delivered("u4", "d:u4:zz", 2) // a pair already pending still merges
	close(f.st.gate)
	f.c.Close()
	for u, want := range map[string]uint64{"u1": 1, "u2": 1, "u3": 1, "u4": 2, "u5": 0} {
		if st := f.state(u, "d:"+u+":zz"); st.DeliveredSeq != want {
			t.Fatalf("%s: delivered %d, want %d", u, st.DeliveredSeq, want)
		}
	}
	if logs := f.logs.String(); !strings.Contains(logs, "cursor moves dropped") || !strings.Contains(logs, "dropped=1") {
		t.Fatalf("drop not logged: %q", logs)
	}
}

// TestConcurrentMoves: moves from many goroutines while flushing (run
// with -race) end with every user's highest seq stored.
func TestConcurrentMoves(t *testing.T) {
	f := newFixture(t, Options{Interval: time.Millisecond})
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	chat := f.group("conc", users...)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := uint64(1); s <= 500; s++ {
				f.c.Delivered(u, chat, s)
			}
		}()
	}
	wg.Wait()
	f.c.Close()
	for _, u := range users {
		if st := f.state(u, chat); st.DeliveredSeq != 500 {
			t.Fatalf("%s: %+v", u, st)
		}
	}
}
