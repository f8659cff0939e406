package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// AppendMessages commits every message, dedupe record and expiry-index entry
// of msgs in one batch with pebble.Sync, so a nil return means the whole
// batch is on disk (it is what an MQTT PUBACK promises). Concurrent calls
// share fsyncs through pebble's commit pipeline.
//
// A batch holding a (chat, seq) that is already stored, or a (sender, cmid)
// with a live record, is refused whole with store.ErrConflict, as on the
// other backends. The keys the batch writes are reserved first, and only
// then checked against the store, until its commit has ended: of two
// batches sharing a key the second to reserve either finds the key reserved
// or reads the first's committed write, so both cannot pass, and no lock is
// held across the fsync. A batch that meets one still committing is refused
// too, as if that one had committed first.
func (s *Store) AppendMessages(ctx context.Context, msgs []store.Message) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	defer s.mu.RUnlock()
	if len(msgs) == 0 {
		return nil
	}

	changes := store.HasChanges(msgs)
	if changes {
		defer s.lockChats(msgs)()
	}
	cutoff := s.now().Add(-store.DedupeWindow)
	keys, err := appendKeys(msgs, cutoff)
	if err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	if err := s.reserve(keys); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	defer s.release(keys)

	b := s.db.NewBatch()
	defer b.Close()
	// Held across the commit: the sweeper must not delete a record this
	// batch has judged expired and is about to replace.
	s.dedupeMu.RLock()
	defer s.dedupeMu.RUnlock()

	read, err := s.checkSeqsFree(ctx, msgs)
	if err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	var cs *changeSet
	if changes {
		cs = newChangeSet(s, b, msgs)
		for i := range msgs {
			if msgs[i].Change == nil {
				continue
			}
			if err := cs.apply(msgs, i); err != nil {
				return fmt.Errorf("pebble: append: %w", err)
			}
		}
	}
	d := dedupeWriter{s: s, b: b, cutoff: cutoff}
	var key, val []byte // reused: Batch.Set copies
	for i := range msgs {
		m := &msgs[i]
		key = messageKey(key[:0], m.Chat, m.Seq)
		if cs != nil {
			val = cs.value(val[:0], m)
		} else {
			val = encodeMessage(val[:0], m)
		}
		if err := b.Set(key, val, nil); err != nil {
			return fmt.Errorf("pebble: append: %w", err)
		}
		if err := d.add(m); err != nil {
			return fmt.Errorf("pebble: append: %w", err)
		}
	}
	if cs != nil {
		if err := cs.writeStored(); err != nil {
			return fmt.Errorf("pebble: append: %w", err)
		}
	}
	// Last chance to abandon the batch: after Commit the messages exist.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	s.ceilings.committed(msgs, read)
	return nil
}

// checkSeqsFree returns store.ErrConflict when a (chat, seq) of msgs is
// stored, and the highest seq stored of each chat it had to look at.
//
// A chat whose ceiling (seqCeilings) lies below the batch's lowest seq
// needs no read: the database is this process's alone, so nothing it did
// not write itself can be there. That is every batch of a writer after
// its chat's first. Other chats are read with one iterator for the batch
// and one seek per chat, to its lowest seq in msgs, and one back to its
// last message, which becomes its ceiling.
func (s *Store) checkSeqsFree(ctx context.Context, msgs []store.Message) (map[string]uint64, error) {
	type span struct{ lo, hi uint64 }
	spans := make(map[string]span, 4)
	var chats []string
	for i := range msgs {
		m := &msgs[i]
		sp, ok := spans[m.Chat]
		switch {
		case !ok:
			chats = append(chats, m.Chat)
			sp = span{m.Seq, m.Seq}
		case m.Seq < sp.lo:
			sp.lo = m.Seq
		case m.Seq > sp.hi:
			sp.hi = m.Seq
		}
		spans[m.Chat] = sp
	}
	unknown := chats[:0:0]
	for _, chat := range chats {
		if top, ok := s.ceilings.get(chat); !ok || spans[chat].lo <= top {
			unknown = append(unknown, chat)
		}
	}
	if len(unknown) == 0 {
		return nil, nil
	}
	upper := []byte(prefixMessage)
	upper[len(upper)-1]++
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(prefixMessage), UpperBound: upper})
	if err != nil {
		return nil, err
	}
	stored := make(map[string]uint64, len(unknown))
	err = nil
	for _, chat := range unknown {
		sp := spans[chat]
		prefix, end := chatBounds(chat)
		for ok := it.SeekGE(seqKey(prefix, sp.lo)); ok && bytes.Compare(it.Key(), end) < 0; ok = it.Next() {
			seq, _ := seqFromKey(it.Key())
			if seq > sp.hi {
				break
			}
			if slices.ContainsFunc(msgs, func(m store.Message) bool { return m.Chat == chat && m.Seq == seq }) {
				err = fmt.Errorf("%w: chat %q seq %d is stored", store.ErrConflict, chat, seq)
				break
			}
		}
		if err != nil {
			break
		}
		stored[chat] = 0
		if it.SeekLT(end) && bytes.HasPrefix(it.Key(), prefix) {
			stored[chat], _ = seqFromKey(it.Key())
		}
	}
	return stored, errors.Join(err, it.Close())
}

// seqCeilings remembers, per chat, a seq no stored message of the chat
// exceeds: what an append read (checkSeqsFree) or wrote itself. A purge
// only lowers the truth below it, which leaves it correct. Bounded like
// the writers' own counters: past maxCeilings chats it starts over.
type seqCeilings struct {
	mu  sync.Mutex
	top map[string]uint64
}

const maxCeilings = 1 << 17

func (c *seqCeilings) get(chat string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.top[chat]
	return v, ok
}

// committed raises the ceilings after msgs were stored; read holds what
// checkSeqsFree read of the chats it had no ceiling for.
func (c *seqCeilings) committed(msgs []store.Message, read map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.top == nil || len(c.top) > maxCeilings {
		c.top = make(map[string]uint64)
	}
	for chat, seq := range read {
		c.top[chat] = max(c.top[chat], seq)
	}
	for i := range msgs {
		m := &msgs[i]
		if top, ok := c.top[m.Chat]; ok && m.Seq > top {
			c.top[m.Chat] = m.Seq
		}
	}
}

// appendKeys lists the message keys and the dedupe keys msgs write: one
// record per (From, CMID) inside the window, the first message's, as
// dedupeWriter.add decides.
func appendKeys(msgs []store.Message, cutoff time.Time) ([]string, error) {
	keys := make([]string, 0, 2*len(msgs))
	var records map[string]struct{}
	for i := range msgs {
		m := &msgs[i]
		if err := checkKeyPart(m.Chat); err != nil {
			return nil, fmt.Errorf("chat %q: %w", m.Chat, err)
		}
		keys = append(keys, string(messageKey(nil, m.Chat, m.Seq)))
		if m.CMID == "" || m.SentAt.Before(cutoff) {
			continue
		}
		if err := checkKeyPart(m.From); err != nil {
			return nil, fmt.Errorf("sender %q: %w", m.From, err)
		}
		k := string(dedupeKey(m.From, m.CMID))
		if _, dup := records[k]; dup {
			continue
		}
		if records == nil {
			records = make(map[string]struct{})
		}
		records[k] = struct{}{}
		keys = append(keys, k)
	}
	return keys, nil
}

// reserve claims keys for one append, all or none. A key already claimed,
// by a concurrent append or earlier in the same list (a (chat, seq) twice
// in one batch), is a conflict.
func (s *Store) reserve(keys []string) error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	for i, k := range keys {
		if _, busy := s.inflight[k]; busy {
			for _, k := range keys[:i] {
				delete(s.inflight, k)
			}
			return fmt.Errorf("%w: key %q is being written by another append", store.ErrConflict, k)
		}
		s.inflight[k] = struct{}{}
	}
	return nil
}

// release ends the reservations of one append.
func (s *Store) release(keys []string) {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	for _, k := range keys {
		delete(s.inflight, k)
	}
}

// LastSeq reads the chat's last key only.
func (s *Store) LastSeq(ctx context.Context, chat string) (uint64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, fmt.Errorf("pebble: last seq: %w", err)
	}
	defer s.mu.RUnlock()

	lower, upper := chatBounds(chat)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("pebble: last seq: %w", err)
	}
	var seq uint64
	if it.Last() {
		var ok bool
		if seq, ok = seqFromKey(it.Key()); !ok {
			err = fmt.Errorf("chat %q: bad key: %w", chat, errCorrupt)
		}
	}
	// Close reports any error that made Last return false: a failed read
	// must not pass for an empty chat.
	if err = errors.Join(err, it.Close()); err != nil {
		return 0, fmt.Errorf("pebble: last seq: %w", err)
	}
	if seq == 0 {
		// A chat emptied by retention keeps counting from its purge marker.
		if seq, err = s.purgedThrough(chat); err != nil {
			return 0, fmt.Errorf("pebble: last seq: %w", err)
		}
	}
	return seq, nil
}

// History reads at most q.Limit entries between bounds derived from the
// query: forward from After, or backward from Before (or the chat's end) and
// then reversed in place. When both After and Before are set, both bound the
// page.
func (s *Store) History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error) {
	return s.history(ctx, chat, q, true)
}

// history is History, with the reactions read or not (LastMessages).
func (s *Store) history(ctx context.Context, chat string, q store.HistoryQuery, reactions bool) ([]store.Message, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: history: %w", err)
	}
	defer s.mu.RUnlock()
	if q.Limit <= 0 {
		return nil, fmt.Errorf("pebble: history: limit %d, want > 0", q.Limit)
	}

	lower, upper := chatBounds(chat)
	prefix := lower
	if q.After > 0 {
		if q.After == math.MaxUint64 {
			return []store.Message{}, nil
		}
		lower = seqKey(prefix, q.After+1)
	}
	if q.Before > 0 {
		upper = seqKey(prefix, q.Before)
	}
	if bytes.Compare(lower, upper) >= 0 {
		return []store.Message{}, nil
	}

	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: history: %w", err)
	}
	out, err := readPage(it, chat, q.Limit, q.After > 0)
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: history: %w", err)
	}
	if !reactions || len(out) == 0 {
		return out, nil
	}
	rlo, rhi := pairBounds(prefixReaction, chat)
	if it, err = s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: rlo, UpperBound: rhi}); err != nil {
		return nil, fmt.Errorf("pebble: history: %w", err)
	}
	err = s.attachReactions(it, chat, out)
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: history: %w", err)
	}
	return out, nil
}

// readPage stops on the limit-th entry rather than stepping past it, so no
// more than limit entries are read.
func readPage(it *pebble.Iterator, chat string, limit int, forward bool) ([]store.Message, error) {
	// limit is caller input; do not let it size the allocation.
	out := make([]store.Message, 0, min(limit, 256))
	var ok bool
	if forward {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	for ok {
		var m store.Message
		if err := decodeEntry(chat, it.Key(), it.Value(), &m); err != nil {
			return nil, err
		}
		out = append(out, m)
		if len(out) == limit {
			break
		}
		if forward {
			ok = it.Next()
		} else {
			ok = it.Prev()
		}
	}
	if !forward {
		slices.Reverse(out)
	}
	return out, nil
}

func decodeEntry(chat string, k, v []byte, m *store.Message) error {
	seq, ok := seqFromKey(k)
	if !ok {
		return fmt.Errorf("chat %q: bad key: %w", chat, errCorrupt)
	}
	if err := decodeMessage(v, m); err != nil {
		return fmt.Errorf("chat %q seq %d: %w", chat, seq, err)
	}
	m.Chat, m.Seq = chat, seq
	return nil
}
