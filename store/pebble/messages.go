package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

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
// other backends. So is one that collides with a batch still committing:
// the keys it writes are reserved under appendMu from the checks to the end
// of the commit, which decides the race for whoever checked first, without
// holding a lock across the fsync.
func (s *Store) AppendMessages(ctx context.Context, msgs []store.Message) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	defer s.mu.RUnlock()
	if len(msgs) == 0 {
		return nil
	}

	b := s.db.NewBatch()
	defer b.Close()
	// Held across the commit: the sweeper must not delete a record this
	// batch has judged expired and is about to replace.
	s.dedupeMu.RLock()
	defer s.dedupeMu.RUnlock()

	reserved, err := s.prepareAppend(b, msgs)
	defer s.release(reserved)
	if err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	// Last chance to abandon the batch: after Commit the messages exist.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebble: append: %w", err)
	}
	return nil
}

// prepareAppend fills b with msgs after checking, under appendMu, that none
// of their keys is stored or being committed, and reserves those keys. It
// returns the keys it reserved, which the caller releases after the commit
// whatever the outcome (also on error: a partly reserved batch).
func (s *Store) prepareAppend(b *pebble.Batch, msgs []store.Message) ([]string, error) {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()

	var reserved []string
	reserve := func(k []byte) error {
		if _, busy := s.inflight[string(k)]; busy {
			return fmt.Errorf("%w: key %q is being written by a concurrent append", store.ErrConflict, k)
		}
		ks := string(k)
		s.inflight[ks] = struct{}{}
		reserved = append(reserved, ks)
		return nil
	}
	d := dedupeWriter{s: s, b: b, cutoff: s.now().Add(-store.DedupeWindow), reserve: reserve}
	var key, val []byte // reused: Batch.Set copies
	for i := range msgs {
		m := &msgs[i]
		if err := checkKeyPart(m.Chat); err != nil {
			return reserved, fmt.Errorf("chat %q: %w", m.Chat, err)
		}
		key = messageKey(key[:0], m.Chat, m.Seq)
		taken, err := s.exists(key)
		if err != nil {
			return reserved, err
		}
		if taken {
			return reserved, fmt.Errorf("%w: chat %q seq %d is stored", store.ErrConflict, m.Chat, m.Seq)
		}
		// Also refuses the same (chat, seq) twice in one batch.
		if err := reserve(key); err != nil {
			return reserved, err
		}
		val = encodeMessage(val[:0], m)
		if err := b.Set(key, val, nil); err != nil {
			return reserved, err
		}
		if err := d.add(m); err != nil {
			return reserved, err
		}
	}
	return reserved, nil
}

// release ends the reservations of one append.
func (s *Store) release(keys []string) {
	if len(keys) == 0 {
		return
	}
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
	return seq, nil
}

// History reads at most q.Limit entries between bounds derived from the
// query: forward from After, or backward from Before (or the chat's end) and
// then reversed in place. When both After and Before are set, both bound the
// page.
func (s *Store) History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error) {
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
