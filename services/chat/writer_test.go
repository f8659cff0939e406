package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mqchat/mqchat/store"
)

type pair struct{ a, b string }

// TestSeqConcurrent checks that seq is gap-free and strictly increasing per
// chat, and that delivery follows seq, under concurrent sends from both
// sides of one or several chats.
func TestSeqConcurrent(t *testing.T) {
	cases := []struct {
		name       string
		shards     int
		chats      int
		goroutines int
		perG       int
	}{
		{"one chat", 0, 1, 8, 200},
		{"four chats, default shards", 0, 4, 8, 200},
		{"five chats, one shard", 1, 5, 8, 100},
		{"three chats, two shards", 2, 3, 8, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Shards: tc.shards})
			hub := f.user()
			pairs := make([]pair, tc.chats)
			for i := range pairs {
				pairs[i] = pair{hub, f.user()}
			}

			type sent struct {
				from, to string
				res      Result
			}
			results := make([][]sent, tc.goroutines)
			start := make(chan struct{})
			var wg sync.WaitGroup
			var failed atomic.Value
			for g := range tc.goroutines {
				wg.Go(func() {
					<-start
					for i := range tc.perG {
						p := pairs[(g+i)%len(pairs)]
						from, to := p.a, p.b
						if (g+i/len(pairs))%2 == 1 {
							from, to = to, from
						}
						cmid := fmt.Sprintf("g%d-%d", g, i)
						res, err := f.svc.Send(context.Background(), from, Envelope{To: "user:" + to, CMID: cmid, Body: []byte(`"` + cmid + `"`)})
						if err != nil {
							failed.CompareAndSwap(nil, fmt.Errorf("%s: %w", cmid, err))
							return
						}
						results[g] = append(results[g], sent{from, to, res})
					}
				})
			}
			close(start)
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				t.Fatalf("send: %v", err)
			}

			byChat := map[string]map[uint64]sent{} // chat -> seq -> send
			total := 0
			for g, rs := range results {
				lastSeq := map[string]uint64{}
				for _, s := range rs {
					m := s.res.Message
					if s.res.Duplicate {
						t.Fatalf("%s reported as duplicate", m.CMID)
					}
					if m.Chat != DirectChatID(s.from, s.to) {
						t.Fatalf("%s went to chat %s", m.CMID, m.Chat)
					}
					// One goroutine's sends are ordered, so their seqs are too.
					if m.Seq <= lastSeq[m.Chat] {
						t.Fatalf("goroutine %d: seq %d after %d in %s", g, m.Seq, lastSeq[m.Chat], m.Chat)
					}
					lastSeq[m.Chat] = m.Seq
					if byChat[m.Chat] == nil {
						byChat[m.Chat] = map[uint64]sent{}
					}
					if prev, dup := byChat[m.Chat][m.Seq]; dup {
						t.Fatalf("seq %d of %s given to %s and %s", m.Seq, m.Chat, prev.res.Message.CMID, m.CMID)
					}
					byChat[m.Chat][m.Seq] = s
					total++
				}
			}
			if total != tc.goroutines*tc.perG || len(byChat) != tc.chats {
				t.Fatalf("%d results in %d chats, want %d in %d", total, len(byChat), tc.goroutines*tc.perG, tc.chats)
			}

			delivered := map[string][]delivery{}
			for _, d := range f.dlv.all() {
				delivered[d.msg.Chat] = append(delivered[d.msg.Chat], d)
			}
			for chat, bySeq := range byChat {
				n := uint64(len(bySeq))
				if got := f.lastSeq(chat); got != n {
					t.Fatalf("%s: LastSeq = %d, want %d", chat, got, n)
				}
				hist := f.history(chat)
				if uint64(len(hist)) != n {
					t.Fatalf("%s: history has %d messages, want %d", chat, len(hist), n)
				}
				for i, m := range hist {
					s, ok := bySeq[uint64(i+1)]
					if m.Seq != uint64(i+1) || !ok || m.CMID != s.res.Message.CMID || m.ID != s.res.Message.ID || m.From != s.from {
						t.Fatalf("%s: history[%d] = seq %d cmid %s, result for seq %d is %+v", chat, i, m.Seq, m.CMID, i+1, s.res.Message)
					}
				}
				ds := delivered[chat]
				if uint64(len(ds)) != n {
					t.Fatalf("%s: %d deliveries, want %d", chat, len(ds), n)
				}
				for i, d := range ds {
					// In order, each once: the i-th delivery is seq i+1.
					if d.msg.Seq != uint64(i+1) {
						t.Fatalf("%s: delivery %d has seq %d", chat, i, d.msg.Seq)
					}
					s := bySeq[d.msg.Seq]
					if !slices.Equal(d.recipients, []string{s.to, s.from}) || d.msg.ID != s.res.Message.ID {
						t.Fatalf("%s seq %d delivered to %v, want [%s %s]", chat, d.msg.Seq, d.recipients, s.to, s.from)
					}
				}
			}
			m := f.met.snapshot()
			if m.committed() != total || m.sends["stored"] != total || len(m.commits) > total {
				t.Fatalf("metrics: %d committed in %d commits, %d stored; want %d", m.committed(), len(m.commits), m.sends["stored"], total)
			}
			t.Logf("%d messages in %d commits", total, len(m.commits))
		})
	}
}

// TestStoreFailure checks a failed append is reported, not delivered, and
// leaves no gap: the writer forgets its counters and reloads them.
func TestStoreFailure(t *testing.T) {
	t.Run("single send", func(t *testing.T) {
		f := newFixture(t, Options{})
		a, b := f.user(), f.user()
		chat := DirectChatID(a, b)
		for i := range 3 {
			f.send(a, b, fmt.Sprint("ok", i)) // the writer now caches seq 3
		}
		f.st.failAppend.Store(true)
		for _, cmid := range []string{"bad1", "bad2"} {
			res, err := f.svc.Send(context.Background(), a, Envelope{To: "user:" + b, CMID: cmid, Body: []byte(`1`)})
			expectCode(t, err, CodeInternal)
			if !errors.Is(err, errInjected) {
				t.Fatalf("cause not kept: %v", err)
			}
			if !isZero(res) {
				t.Fatalf("Result = %+v on failure", res)
			}
		}
		if n := f.dlv.count(); n != 3 {
			t.Fatalf("%d deliveries, want 3", n)
		}
		f.st.failAppend.Store(false)

		// The failed cmid left no dedupe record: its retry is stored as new.
		res := f.send(a, b, "bad1")
		if res.Duplicate || res.Message.Seq != 4 {
			t.Fatalf("retry after failure = %+v, want new seq 4", res)
		}
		if res := f.send(b, a, "next"); res.Message.Seq != 5 {
			t.Fatalf("next seq %d, want 5", res.Message.Seq)
		}
		hist := f.history(chat)
		for i, m := range hist {
			if m.Seq != uint64(i+1) {
				t.Fatalf("gap: history[%d].Seq = %d", i, m.Seq)
			}
		}
		if len(hist) != 5 || f.dlv.count() != 5 {
			t.Fatalf("%d stored, %d delivered; want 5", len(hist), f.dlv.count())
		}
		if got := f.dlv.all()[3].msg.Seq; got != 4 {
			t.Fatalf("4th delivery seq %d", got)
		}
	})

	t.Run("whole batch across two chats", func(t *testing.T) {
		f := newFixture(t, Options{Shards: 1})
		a, b, c := f.user(), f.user(), f.user()
		ab, ac := DirectChatID(a, b), DirectChatID(a, c)
		f.send(a, c, "warm") // ac's counter is cached at 1

		g := newGate()
		var batch []store.Message
		f.st.setAppendHook(g.hook(func(call int64, msgs []store.Message) error {
			if call == 2 {
				batch = slices.Clone(msgs)
				return errInjected
			}
			return nil
		}))
		defer g.open()

		first := f.sendAsync(context.Background(), a, b, "first")
		recv(t, "first append", g.entered)
		// Queue behind the blocked append, in a known order: they form one batch.
		var queued []<-chan sendOutcome
		for i, s := range []struct{ from, to, cmid string }{{a, b, "x"}, {c, a, "y"}} {
			queued = append(queued, f.sendAsync(context.Background(), s.from, s.to, s.cmid))
			waitFor(t, "send to be queued", func() bool { return f.queued(ab) == i+1 })
		}
		g.open()

		if o := recv(t, "first", first); o.err != nil || o.res.Message.Seq != 1 {
			t.Fatalf("first = %+v, %v", o.res, o.err)
		}
		for _, ch := range queued {
			o := recv(t, "queued send", ch)
			expectCode(t, o.err, CodeInternal)
		}
		if len(batch) != 2 || batch[0].CMID != "x" || batch[0].Seq != 2 || batch[1].CMID != "y" || batch[1].Seq != 2 {
			t.Fatalf("failed batch = %+v, want x@%s/2 and y@%s/2", batch, ab, ac)
		}
		if n := f.dlv.count(); n != 2 {
			t.Fatalf("%d deliveries, want 2 (warm, first)", n)
		}

		// Both chats continue without a gap.
		if r := f.send(a, b, "x"); r.Duplicate || r.Message.Seq != 2 {
			t.Fatalf("x after failure = %+v, want new seq 2", r)
		}
		if r := f.send(c, a, "y"); r.Duplicate || r.Message.Seq != 2 {
			t.Fatalf("y after failure = %+v, want new seq 2", r)
		}
		if f.lastSeq(ab) != 2 || f.lastSeq(ac) != 2 {
			t.Fatalf("LastSeq ab %d ac %d, want 2 and 2", f.lastSeq(ab), f.lastSeq(ac))
		}
	})
}

func TestCancelledContext(t *testing.T) {
	t.Run("cancelled before the send", func(t *testing.T) {
		f := newFixture(t, Options{})
		a, b := f.user(), f.user()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := f.svc.Send(ctx, a, Envelope{To: "user:" + b, CMID: "c", Body: []byte(`1`)})
		expectCode(t, err, CodeUnavailable)
		_, _, err = sendPayload(ctx, f.svc, a, []byte(`{"to":"user:`+b+`","cmid":"c","body":1}`))
		expectCode(t, err, CodeUnavailable)
		if f.st.appendCalls.Load() != 0 || f.lastSeq(DirectChatID(a, b)) != 0 || f.dlv.count() != 0 {
			t.Fatal("a cancelled send reached the store")
		}
	})

	t.Run("cancelled after the recipient lookup", func(t *testing.T) {
		f := newFixture(t, Options{})
		a, b := f.user(), f.user()
		ctx, cancel := context.WithCancel(context.Background())
		f.st.setUserHook(func(context.Context) { cancel() })
		_, err := f.svc.Send(ctx, a, Envelope{To: "user:" + b, CMID: "c", Body: []byte(`1`)})
		f.st.setUserHook(nil)
		expectCode(t, err, CodeUnavailable)
		// The writer handles a chat's sends in order: if the cancelled send
		// had been stored this one would get seq 2.
		if r := f.send(a, b, "c"); r.Duplicate || r.Message.Seq != 1 {
			t.Fatalf("next send = %+v, want new seq 1", r)
		}
		if f.dlv.count() != 1 {
			t.Fatalf("%d deliveries, want 1", f.dlv.count())
		}
	})

	t.Run("cancelled while queued", func(t *testing.T) {
		f := newFixture(t, Options{})
		a, b := f.user(), f.user()
		chat := DirectChatID(a, b)
		g := newGate()
		f.st.setAppendHook(g.hook(nil))
		defer g.open()

		first := f.sendAsync(context.Background(), a, b, "first")
		recv(t, "first append", g.entered)
		ctx, cancel := context.WithCancel(context.Background())
		waiting := f.sendAsync(ctx, a, b, "late")
		waitFor(t, "send to be queued", func() bool { return f.queued(chat) == 1 })
		cancel()
		o := recv(t, "cancelled send", waiting)
		expectCode(t, o.err, CodeUnavailable)
		g.open()
		if o := recv(t, "first", first); o.err != nil || o.res.Message.Seq != 1 {
			t.Fatalf("first = %+v, %v", o.res, o.err)
		}
		// The writer dropped the cancelled send instead of storing it.
		if r := f.send(a, b, "late"); r.Duplicate || r.Message.Seq != 2 {
			t.Fatalf("retry = %+v, want new seq 2", r)
		}
		if f.lastSeq(chat) != 2 || f.dlv.count() != 2 {
			t.Fatalf("LastSeq %d, %d deliveries; want 2, 2", f.lastSeq(chat), f.dlv.count())
		}
	})
}

func TestClose(t *testing.T) {
	t.Run("after close", func(t *testing.T) {
		f := newFixture(t, Options{})
		a, b := f.user(), f.user()
		f.send(a, b, "1")
		svc := f.svc
		svc.Close()
		svc.Close() // twice is safe
		before := f.st.appendCalls.Load()
		_, err := svc.Send(context.Background(), a, Envelope{To: "user:" + b, CMID: "2", Body: []byte(`1`)})
		expectCode(t, err, CodeUnavailable)
		_, _, err = sendPayload(context.Background(), svc, a, []byte(`{"to":"user:`+b+`","cmid":"3","body":1}`))
		expectCode(t, err, CodeUnavailable)
		if f.st.appendCalls.Load() != before || f.lastSeq(DirectChatID(a, b)) != 1 || f.dlv.count() != 1 {
			t.Fatal("a send after Close reached the store")
		}
		// History only needs the store.
		if page, err := svc.History(context.Background(), a, DirectChatID(a, b), store.HistoryQuery{Limit: 5}); err != nil || len(page) != 1 {
			t.Fatalf("History after Close = %v, %v", page, err)
		}
	})

	t.Run("queued sends are answered", func(t *testing.T) {
		f := newFixture(t, Options{Shards: 1})
		a, b := f.user(), f.user()
		chat := DirectChatID(a, b)
		g := newGate()
		f.st.setAppendHook(g.hook(nil))
		defer g.open()

		first := f.sendAsync(context.Background(), a, b, "first")
		recv(t, "first append", g.entered)
		const k = 5
		var queued []<-chan sendOutcome
		for i := range k {
			queued = append(queued, f.sendAsync(context.Background(), b, a, fmt.Sprint("q", i)))
		}
		waitFor(t, "sends to be queued", func() bool { return f.queued(chat) == k })

		closed := make(chan struct{})
		svc := f.svc
		go func() { svc.Close(); close(closed) }()
		waitFor(t, "Close to begin", func() bool {
			select {
			case <-svc.stop:
				return true
			default:
				return false
			}
		})
		g.open()
		recv(t, "Close", closed)

		seqs := []uint64{recv(t, "first", first).res.Message.Seq}
		for _, ch := range queued {
			o := recv(t, "queued send", ch)
			if o.err != nil {
				t.Fatalf("queued send: %v", o.err)
			}
			seqs = append(seqs, o.res.Message.Seq)
		}
		slices.Sort(seqs)
		if !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6}) {
			t.Fatalf("seqs %v, want 1..6", seqs)
		}
		if f.lastSeq(chat) != k+1 || f.dlv.count() != k+1 {
			t.Fatalf("LastSeq %d, %d deliveries; want %d", f.lastSeq(chat), f.dlv.count(), k+1)
		}
	})

	t.Run("concurrent with sends", func(t *testing.T) {
		f := newFixture(t, Options{Shards: 2})
		users := []string{f.user(), f.user(), f.user()}
		const senders = 8
		var ok atomic.Int64
		type outcome struct {
			cmid, chat string
			seq        uint64
			err        error
		}
		outs := make([][]outcome, senders)
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				for i := range 100_000 {
					from, to := users[g%3], users[(g+1+i%2)%3]
					cmid := fmt.Sprintf("g%d-%d", g, i)
					res, err := f.svc.Send(context.Background(), from, Envelope{To: "user:" + to, CMID: cmid, Body: []byte(`1`)})
					outs[g] = append(outs[g], outcome{cmid, DirectChatID(from, to), res.Message.Seq, err})
					if err != nil {
						return
					}
					ok.Add(1)
				}
			})
		}
		waitFor(t, "some sends to succeed", func() bool { return ok.Load() >= 50 })
		svc := f.svc
		closed := make(chan struct{})
		go func() { svc.Close(); close(closed) }()
		recv(t, "Close", closed)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		recv(t, "senders to stop", done)

		stored := map[string]map[string]uint64{} // chat -> cmid -> seq
		for _, s := range [][2]string{{users[0], users[1]}, {users[1], users[2]}, {users[0], users[2]}} {
			chat := DirectChatID(s[0], s[1])
			stored[chat] = map[string]uint64{}
			for i, m := range f.history(chat) {
				if m.Seq != uint64(i+1) {
					t.Fatalf("%s: gap at %d", chat, i)
				}
				stored[chat][m.CMID] = m.Seq
			}
		}
		var succeeded int
		for _, os := range outs {
			last := os[len(os)-1]
			expectCode(t, last.err, CodeUnavailable)
			if seq, found := stored[last.chat][last.cmid]; found {
				t.Fatalf("%s refused but stored at seq %d", last.cmid, seq)
			}
			for _, o := range os[:len(os)-1] {
				if seq, found := stored[o.chat][o.cmid]; !found || seq != o.seq {
					t.Fatalf("%s acknowledged at %d but stored at %d (%v)", o.cmid, o.seq, seq, found)
				}
				succeeded++
			}
		}
		var total int
		for _, m := range stored {
			total += len(m)
		}
		if total != succeeded || f.dlv.count() != succeeded {
			t.Fatalf("%d stored, %d delivered, %d acknowledged", total, f.dlv.count(), succeeded)
		}
	})
}
