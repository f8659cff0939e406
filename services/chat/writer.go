package chat

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mqchat/mqchat/store"
)

const (
	maxBatch     = 256     // sends committed with one fsync
	maxCached    = 1 << 17 // chats whose last seq a writer remembers
	queueLen     = 1024    // sends waiting for a writer
	fanoutLen    = 4096    // stored messages waiting for fan-out
	storeTimeout = 30 * time.Second
)

// writer is the single writer of every chat hashed to it. It owns those
// chats' seq counters, so seq is gap-free and strictly increasing without
// locks, and it commits whatever is queued in one batch: one fsync for many
// sends (group commit) keeps durable throughput high when many clients send.
//
// Fan-out runs on a goroutine of its own per writer: the sender's PUBACK
// waits for the durable store, not for publishing to every member of a large
// group, while one FIFO per writer still publishes each chat in seq order.
type writer struct {
	s      *Service
	in     chan *request
	exited chan struct{}
	last   map[string]uint64 // chat -> last stored seq
	epoch  uint64            // Service.epoch when last was started
	out    chan fanoutItem
	// fanning counts stored messages not yet fanned out, so callers can
	// tell when fan-out has caught up (tests, graceful drains).
	fanning atomic.Int64
}

type fanoutItem struct {
	recipients []string
	quiet      []string // recipients who get no push (see requests.go)
	msg        store.Message
}

type request struct {
	ctx        context.Context
	msg        store.Message
	recipients []string
	reply      chan reply
}

type reply struct {
	res Result
	err error
}

func newWriter(s *Service) *writer {
	return &writer{
		s: s, in: make(chan *request, queueLen), exited: make(chan struct{}),
		last: make(map[string]uint64), out: make(chan fanoutItem, fanoutLen),
	}
}

// fanout publishes stored messages until the writer closes w.out, and
// moves each sender's own cursors past its message: what you wrote is
// neither undelivered nor unread to you.
//
// It takes whatever is queued at once and moves each (sender, chat)'s
// cursors once for all of it: a cursor write waits in the store's commit
// pipeline behind the fsyncs of concurrent sends, so one write per message
// would bound fan-out at one message per fsync per writer.
func (w *writer) fanout() {
	items := make([]fanoutItem, 0, maxBatch)
	for d := range w.out {
		items = append(items[:0], d)
	more:
		for len(items) < maxBatch {
			select {
			case d, ok := <-w.out:
				if !ok {
					break more
				}
				items = append(items, d)
			default:
				break more
			}
		}
		for _, d := range items {
			w.fan(d)
		}
		w.advanceSenders(items)
		clear(items)
		w.fanning.Add(-int64(len(items)))
	}
}

func (w *writer) fan(d fanoutItem) {
	if qd, ok := w.s.deliver.(QuietDeliverer); ok && len(d.quiet) > 0 {
		qd.DeliverQuiet(d.recipients, d.quiet, d.msg)
		return
	}
	w.s.deliver.Deliver(d.recipients, d.msg)
}

// advanceSenders moves each sender's cursors to its last message in items
// (a chat's messages are in seq order there).
func (w *writer) advanceSenders(items []fanoutItem) {
	if w.s.list == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	type key struct{ from, chat string }
	last := make(map[key]int, len(items))
	for i, d := range items {
		last[key{d.msg.From, d.msg.Chat}] = i
	}
	for i, d := range items {
		if last[key{d.msg.From, d.msg.Chat}] != i {
			continue // a later message of the same sender and chat moves them further
		}
		_, _, err := w.s.list.AdvanceCursors(ctx, d.msg.From, d.msg.Chat, d.msg.Seq, d.msg.Seq, w.s.opts.Now())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			w.s.opts.Logger.Error("advance sender cursors", "chat", d.msg.Chat, "seq", d.msg.Seq, "error", err)
		}
	}
}

// enqueue hands m to the writer; await then waits for its outcome. Split
// so that a caller can queue several sends in order before waiting.
func (w *writer) enqueue(ctx context.Context, m store.Message, recipients []string) (*request, error) {
	r := &request{ctx: ctx, msg: m, recipients: recipients, reply: make(chan reply, 1)}
	select {
	case <-w.s.stop:
		return nil, newError(CodeUnavailable, "server is shutting down", nil)
	default:
	}
	select {
	case w.in <- r:
		return r, nil
	case <-ctx.Done():
		return nil, newError(CodeUnavailable, "send queue is full", ctx.Err())
	case <-w.exited:
		return nil, newError(CodeUnavailable, "server is shutting down", nil)
	}
}

func (w *writer) await(ctx context.Context, r *request) (Result, error) {
	select {
	case rep := <-r.reply:
		return rep.res, rep.err
	case <-ctx.Done():
		// The writer may still commit it; a retry with the same cmid then
		// returns the stored message instead of storing it twice.
		return Result{}, newError(CodeUnavailable, "send timed out, retry with the same cmid", ctx.Err())
	case <-w.exited:
		select {
		case rep := <-r.reply:
			return rep.res, rep.err
		default:
			return Result{}, newError(CodeUnavailable, "server is shutting down", nil)
		}
	}
}

func (w *writer) loop(stop <-chan struct{}) {
	defer close(w.exited)
	defer close(w.out)
	batch := make([]*request, 0, maxBatch)
	for {
		select {
		case r := <-w.in:
			batch = append(batch, r)
		case <-stop:
			w.drain(batch)
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-w.in:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		w.process(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// drain commits whatever was queued before the stop, so a send that made it
// into the queue is answered rather than dropped.
func (w *writer) drain(batch []*request) {
	for {
		select {
		case r := <-w.in:
			batch = append(batch, r)
			if len(batch) == maxBatch {
				w.process(batch)
				batch = batch[:0]
			}
		default:
			if len(batch) > 0 {
				w.process(batch)
			}
			return
		}
	}
}

// Refusals of a whole batch that a client cures by retrying with the same
// cmid, on this node or another.
const (
	msgFenced = "this node is leaving the cluster; retry with the same cmid"
	msgMoved  = "the chat's writer moved to another node; retry with the same cmid"
)

func (w *writer) process(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	s := w.s
	if e := s.epoch.Load(); e != w.epoch {
		clear(w.last) // another node may have written these chats
		w.epoch = e
	}

	// The first attempt trusts the store's own dedupe check, which every
	// backend makes inside the append (it refuses a live (sender, cmid)
	// with ErrConflict): a retried send is rare, and looking each cmid up
	// here as well would read every send's dedupe record twice. A refused
	// batch is prepared again with the lookups, which answer the retries
	// as duplicates.
	p := w.prepare(ctx, batch, false)
	// A conflict means another writer stored one of the batch's seqs or
	// cmids (a cluster node that took the chat over, or one that has not
	// yet noticed losing it), or that the batch holds a retry. One retry
	// from a fresh LastSeq and fresh dedupe lookups settles the common
	// case: the other node's message is kept and ours follows it, or ours
	// is answered as its duplicate.
	for attempt := 0; len(p.writes) > 0; attempt++ {
		if s.opts.Fence != nil {
			if err := s.opts.Fence.Check(); err != nil {
				w.forget(p.writes)
				p.refuse(newError(CodeUnavailable, msgFenced, err))
				return
			}
		}
		start := time.Now()
		err := s.st.AppendMessages(ctx, p.writes)
		if !errors.Is(err, store.ErrConflict) {
			s.opts.Metrics.ObserveCommit(time.Since(start), len(p.writes), err)
		}
		w.started(p.writes)
		if err == nil {
			w.stored(p)
			return
		}
		// The counters ran ahead of the store: forget them so the next send
		// reloads the truth and seq stays gap-free.
		w.forget(p.writes)
		switch {
		case !errors.Is(err, store.ErrConflict):
			p.refuse(s.storeError(ctx, "append", err))
			return
		case attempt > 0:
			s.opts.Metrics.ObserveCommit(time.Since(start), len(p.writes), err)
			s.opts.Logger.Warn("chat append conflicts again after a retry", "messages", len(p.writes), "error", err)
			p.refuse(newError(CodeUnavailable, msgMoved, err))
			return
		}
		n := len(p.writers)
		p = w.prepare(ctx, p.writers, true)
		if p.duplicates == 0 {
			// No retry explains it: another writer stored one of the seqs.
			s.opts.Metrics.ObserveCommit(time.Since(start), n, err)
			s.opts.Logger.Warn("chat append conflict, retrying the batch", "messages", n, "error", err)
		}
	}
}

// pending is what a batch still has to write after prepare answered the
// rest: messages with their seqs, and per message its request and the
// recipients who get no push.
type pending struct {
	writes     []store.Message
	writers    []*request
	quiets     [][]string
	duplicates int // requests answered as retries of stored messages
}

// refuse answers every request of p with err.
func (p pending) refuse(err error) {
	for _, r := range p.writers {
		r.reply <- reply{err: err}
	}
}

// prepare answers the requests it can without a write (given up, invalid,
// failed lookups and, with lookups, duplicates) and gives every other one
// its chat's next seq.
func (w *writer) prepare(ctx context.Context, batch []*request, lookups bool) pending {
	s := w.s
	// Service.claim keeps two sends of one (sender, cmid) from being in
	// flight together, so a batch never holds a retry of its own message.
	p := pending{
		writes:  make([]store.Message, 0, len(batch)),
		writers: make([]*request, 0, len(batch)),
		quiets:  make([][]string, 0, len(batch)),
	}
	var ts targets // the changed messages' state, made on the first change
	for _, r := range batch {
		if r.ctx.Err() != nil {
			// The sender has given up: storing now would turn its retry into a
			// duplicate it never saw acknowledged. Nothing is lost, it retries.
			r.reply <- reply{err: newError(CodeUnavailable, "send timed out, retry with the same cmid", r.ctx.Err())}
			continue
		}
		ref, err := store.MessageRef{}, store.ErrNotFound
		if lookups && r.msg.CMID != "" { // system messages carry none
			ref, err = s.st.LookupDedupe(ctx, r.msg.From, r.msg.CMID)
		}
		if err == nil {
			p.duplicates++
			r.reply <- w.replay(ctx, r.msg, ref)
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			r.reply <- reply{err: s.storeError(ctx, "dedupe lookup", err)}
			continue
		}
		last, err := w.lastSeq(ctx, r.msg.Chat)
		if err != nil {
			r.reply <- reply{err: s.storeError(ctx, "last seq", err)}
			continue
		}
		// Seqs are gap-free from 1, so the writer's counter alone tells
		// whether reply_to names a message of this chat: no store read.
		if r.msg.ReplyTo > last {
			r.reply <- reply{err: Invalid("reply_to",
				fmt.Sprintf("reply_to %d names no message of this chat (its last seq is %d)", r.msg.ReplyTo, last))}
			continue
		}
		if c := r.msg.Change; c != nil && c.Target > last {
			r.reply <- reply{err: newError(CodeNotFound, fmt.Sprintf("%s.seq: no message %d in this chat", c.Kind, c.Target), nil)}
			continue
		}
		if last == 0 {
			if err := w.joinDirect(ctx, r.msg.Chat); err != nil {
				r.reply <- reply{err: s.storeError(ctx, "join chat", err)}
				continue
			}
		}
		var quiet []string
		if last == 0 {
			err = s.opened(ctx, r.msg)
		}
		if err == nil {
			quiet, err = s.quiet(ctx, r.msg, r.recipients)
		}
		if err != nil {
			r.reply <- reply{err: err}
			continue
		}
		m := r.msg
		m.Seq = last + 1
		m.ID = s.ids.Next()
		m.SentAt = sentAt(s.opts.Now())
		if m.Change != nil {
			if ts == nil {
				ts = targets{}
			}
			switch err := w.checkChange(ctx, m, last, ts, &p); {
			case errors.Is(err, errNoop):
				r.reply <- reply{res: noopResult(m, ts[targetKey{m.Chat, m.Change.Target}])}
				continue
			case err != nil:
				r.reply <- reply{err: err}
				continue
			}
			// Nobody is woken by a push for an edit or a reaction: the
			// change shows when the app next opens the chat.
			quiet = r.recipients
		}
		w.last[m.Chat] = m.Seq
		p.writes = append(p.writes, m)
		p.writers = append(p.writers, r)
		p.quiets = append(p.quiets, quiet)
	}
	return p
}

// stored hands a committed batch to fan-out and answers its senders.
func (w *writer) stored(p pending) {
	for i, m := range p.writes {
		w.fanning.Add(1)
		w.out <- fanoutItem{recipients: p.writers[i].recipients, quiet: p.quiets[i], msg: m}
		p.writers[i].reply <- reply{res: Result{Message: m}}
	}
	if len(w.last) > maxCached {
		clear(w.last) // reloading a counter costs one indexed read
	}
}

// forget drops the cached last seq of every chat in writes.
func (w *writer) forget(writes []store.Message) {
	for _, m := range writes {
		delete(w.last, m.Chat)
	}
}

// started tells Options.Started of the 1:1 chats that writes begin. It runs
// even when the append failed: the write may have landed anyway, and a
// needless notice only costs a recomputation.
func (w *writer) started(writes []store.Message) {
	if w.s.opts.Started == nil {
		return
	}
	for _, m := range writes {
		if a, b, ok := DirectMembers(m.Chat); ok && m.Seq == 1 && a != b {
			w.s.opts.Started.DirectChatStarted(a, b)
		}
	}
}

// joinDirect puts a new 1:1 chat in both users' chat lists before its first
// message is stored, so a crash in between leaves at worst an empty entry,
// never a message missing from the lists.
func (w *writer) joinDirect(ctx context.Context, chat string) error {
	a, b, ok := DirectMembers(chat)
	if !ok {
		return nil
	}
	now := w.s.opts.Now()
	for _, uid := range []string{a, b} {
		if err := w.s.st.JoinChat(ctx, uid, chat, now); err != nil {
			return err
		}
		if a == b {
			break
		}
	}
	return nil
}

func (w *writer) lastSeq(ctx context.Context, chat string) (uint64, error) {
	if v, ok := w.last[chat]; ok {
		return v, nil
	}
	v, err := w.s.st.LastSeq(ctx, chat)
	if err != nil {
		return 0, err
	}
	w.last[chat] = v
	return v, nil
}
