package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mqchat/mqchat/store"
)

// levels is a slog handler that remembers the level of every record, so a
// test can tell that an expected refusal was not logged as an error.
type levels struct {
	mu   sync.Mutex
	seen []slog.Level
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levels) WithGroup(string) slog.Handler            { return l }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, r.Level)
	return nil
}

func (l *levels) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.seen {
		if v == level {
			n++
		}
	}
	return n
}

// otherNode writes through the real store underneath the service, as a
// second node writing the same chat would: it stores m's copies (with ids
// of its own) just before the service's own append.
func otherNode(f *fixture, edit func(m *store.Message)) func(call int64, msgs []store.Message) (store.Message, error) {
	return func(call int64, msgs []store.Message) (store.Message, error) {
		m := msgs[0]
		m.ID += 1 << 20
		edit(&m)
		if err := f.st.Store.AppendMessages(context.Background(), []store.Message{m}); err != nil {
			return m, fmt.Errorf("other node's append: %w", err)
		}
		return m, nil
	}
}

// conflicts counts the commits the store refused with ErrConflict.
func conflicts(s metricsSnapshot) int {
	n := 0
	for _, c := range s.commits {
		if errors.Is(c.err, store.ErrConflict) {
			n++
		}
	}
	return n
}

// TestAppendConflict covers a writer that finds its chat written by another
// node: the store refuses the append, the writer reloads and retries once.
func TestAppendConflict(t *testing.T) {
	cases := []struct {
		name string
		// foreign edits the other node's copy of the writer's first message.
		foreign func(m *store.Message)
		// times the other node writes before the writer's appends.
		times int
		// explainedByDup: the refusal turns out to be a retry of a stored
		// send, which is not a conflict between writers.
		explainedByDup bool
		check          func(t *testing.T, f *fixture, chat string, other []store.Message, res Result, err error)
	}{
		{
			name: "foreign message on the next seq",
			foreign: func(m *store.Message) {
				a, b, _ := DirectMembers(m.Chat)
				m.From, m.CMID, m.Body = otherOf(m.From, a, b), "from-node-2", []byte(`"node 2"`)
			},
			times: 1,
			check: func(t *testing.T, f *fixture, chat string, other []store.Message, res Result, err error) {
				if err != nil || res.Duplicate || res.Message.Seq != 4 {
					t.Fatalf("send = %+v, %v; want stored at seq 4 after the other node's 3", res, err)
				}
				hist := f.history(chat)
				if len(hist) != 4 || hist[2].ID != other[0].ID || hist[3].ID != res.Message.ID {
					t.Fatalf("history = %+v, want 1, 2, the other node's 3, ours at 4", hist)
				}
				// The other node fans out its own message.
				if got := deliveredSeqs(f); !slices.Equal(got, []uint64{1, 2, 4}) {
					t.Fatalf("delivered seqs %v, want [1 2 4]", got)
				}
			},
		},
		{
			// Answered like any retry of a stored send: the refusal is
			// explained, so it is neither counted nor warned about.
			name:           "same cmid stored by another node",
			foreign:        func(*store.Message) {},
			times:          1,
			explainedByDup: true,
			check: func(t *testing.T, f *fixture, chat string, other []store.Message, res Result, err error) {
				if err != nil || !res.Duplicate {
					t.Fatalf("send = %+v, %v; want a duplicate of the other node's message", res, err)
				}
				if m := res.Message; m.Chat != chat || m.Seq != 3 || m.ID != other[0].ID || !m.SentAt.Equal(other[0].SentAt) {
					t.Fatalf("duplicate of %+v, want the other node's %+v", m, other[0])
				}
				if hist := f.history(chat); len(hist) != 3 {
					t.Fatalf("history holds %d messages, want 3", len(hist))
				}
			},
		},
		{
			name: "conflict again after the retry",
			foreign: func(m *store.Message) {
				m.CMID = fmt.Sprintf("from-node-2/%d", m.Seq)
			},
			times: 2,
			check: func(t *testing.T, f *fixture, chat string, other []store.Message, res Result, err error) {
				expectCode(t, err, CodeUnavailable)
				if MessageOf(err) != msgMoved || !errors.Is(err, store.ErrConflict) {
					t.Fatalf("err = %v, want %q caused by store.ErrConflict", err, msgMoved)
				}
				if hist := f.history(chat); len(hist) != 4 || hist[2].ID != other[0].ID || hist[3].ID != other[1].ID {
					t.Fatalf("history = %+v, want 1, 2 and the other node's 3 and 4", hist)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &levels{}
			f := newFixture(t, Options{Logger: slog.New(logs)})
			a, b := f.user(), f.user()
			chat := DirectChatID(a, b)
			f.send(a, b, "one")
			f.send(b, a, "two") // the writer now caches seq 2

			write := otherNode(f, tc.foreign)
			var (
				mu    sync.Mutex
				other []store.Message
				left  atomic.Int64
			)
			left.Store(int64(tc.times))
			f.st.setAppendHook(func(call int64, msgs []store.Message) error {
				if left.Add(-1) < 0 {
					return nil
				}
				m, err := write(call, msgs)
				mu.Lock()
				other = append(other, m)
				mu.Unlock()
				return err
			})
			res, err := f.svc.Send(context.Background(), a, Envelope{To: "user:" + b, CMID: "x", Body: []byte(`"x"`)})
			f.st.setAppendHook(nil)
			mu.Lock()
			got := slices.Clone(other)
			mu.Unlock()
			if len(got) != tc.times {
				t.Fatalf("the other node wrote %d times, want %d", len(got), tc.times)
			}
			tc.check(t, f, chat, got, res, err)

			wantConflicts := tc.times
			if tc.explainedByDup {
				wantConflicts = 0
			}
			if n := conflicts(f.met.snapshot()); n != wantConflicts {
				t.Fatalf("%d conflicts observed, want %d", n, wantConflicts)
			}
			if n := logs.count(slog.LevelError); n != 0 {
				t.Fatalf("%d records logged at error level, want none", n)
			}
			if n := logs.count(slog.LevelWarn); n < wantConflicts {
				t.Fatalf("%d warnings, want at least %d", n, wantConflicts)
			}
			// The chat goes on without a gap, from the store's last seq.
			want := f.lastSeq(chat) + 1
			if r := f.send(b, a, "after"); r.Duplicate || r.Message.Seq != want {
				t.Fatalf("next send = %+v, want new seq %d", r, want)
			}
		})
	}
}

func deliveredSeqs(f *fixture) []uint64 {
	var out []uint64
	for _, d := range f.dlv.all() {
		out = append(out, d.msg.Seq)
	}
	return out
}

// switchFence is a Fence whose verdict the test sets.
type switchFence struct{ err atomic.Pointer[error] }

func (s *switchFence) Check() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// TestFence checks that a node told to stop writing refuses sends as
// retryable without touching the store, and resumes without a gap.
func TestFence(t *testing.T) {
	fence := &switchFence{}
	f := newFixture(t, Options{Fence: fence})
	a, b := f.user(), f.user()
	chat := DirectChatID(a, b)
	f.send(a, b, "one") // the writer now caches seq 1

	errLeaving := errors.New("membership lost")
	fence.err.Store(&errLeaving)
	calls := f.st.appendCalls.Load()
	for _, cmid := range []string{"two", "three"} {
		_, err := f.svc.Send(context.Background(), a, Envelope{To: "user:" + b, CMID: cmid, Body: []byte(`"` + cmid + `"`)})
		expectCode(t, err, CodeUnavailable)
		if MessageOf(err) != msgFenced || !errors.Is(err, errLeaving) {
			t.Fatalf("err = %v, want %q caused by the fence's error", err, msgFenced)
		}
	}
	if n := f.st.appendCalls.Load() - calls; n != 0 {
		t.Fatalf("%d appends while fenced, want none", n)
	}
	if hist := f.history(chat); len(hist) != 1 {
		t.Fatalf("history holds %d messages, want 1", len(hist))
	}
	if n := f.dlv.count(); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}

	fence.err.Store(nil)
	// The refused seqs were forgotten: the retry takes seq 2, not 4.
	if r := f.send(a, b, "two"); r.Duplicate || r.Message.Seq != 2 {
		t.Fatalf("retry after the fence lifted = %+v, want new seq 2", r)
	}
}
