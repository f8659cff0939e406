package pebble

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// sweepChunk bounds how long the sweeper holds dedupeMu, and so how long it
// can delay appends.
const sweepChunk = 1024

// LookupDedupe returns the ref stored for (sender, cmid) unless its message
// is older than store.DedupeWindow; expiry is decided here, not by the
// sweeper, so an unswept record is already invisible.
func (s *Store) LookupDedupe(ctx context.Context, sender, cmid string) (store.MessageRef, error) {
	if err := s.begin(ctx); err != nil {
		return store.MessageRef{}, fmt.Errorf("pebble: lookup dedupe: %w", err)
	}
	defer s.mu.RUnlock()
	// Such a sender cannot have written a record, and its key could alias
	// another sender's: "a\x00b"+"c" and "a"+"b\x00c".
	if checkKeyPart(sender) != nil {
		return store.MessageRef{}, fmt.Errorf("pebble: lookup dedupe: %w", store.ErrNotFound)
	}
	ref, err := s.liveRef(dedupeKey(sender, cmid), s.now().Add(-store.DedupeWindow))
	if err != nil {
		return store.MessageRef{}, fmt.Errorf("pebble: lookup dedupe: %w", err)
	}
	return ref, nil
}

// liveRef returns the record at k, or store.ErrNotFound when there is none
// or its SentAt is before cutoff.
func (s *Store) liveRef(k []byte, cutoff time.Time) (store.MessageRef, error) {
	v, err := s.get(k)
	if err != nil {
		return store.MessageRef{}, err
	}
	ref, err := decodeRef(v)
	if err != nil {
		return store.MessageRef{}, fmt.Errorf("dedupe record %q: %w", k, err)
	}
	if ref.SentAt.Before(cutoff) {
		return store.MessageRef{}, store.ErrNotFound
	}
	return ref, nil
}

// dedupeWriter adds the dedupe records of one AppendMessages batch.
type dedupeWriter struct {
	s      *Store
	b      *pebble.Batch
	cutoff time.Time
	seen   map[string]struct{} // keys written by this batch
	buf    []byte
}

// add keeps the first message stored for (From, CMID), as LookupDedupe
// promises: an earlier message of this batch wins, and an existing live
// record refuses the batch with store.ErrConflict (another writer stored
// that pair first). A record already outside the window would be
// invisible, so it is not written at all, and an expired one is replaced.
func (d *dedupeWriter) add(m *store.Message) error {
	if m.CMID == "" || m.SentAt.Before(d.cutoff) {
		return nil
	}
	if err := checkKeyPart(m.From); err != nil {
		return fmt.Errorf("sender %q: %w", m.From, err)
	}
	k := dedupeKey(m.From, m.CMID)
	if _, dup := d.seen[string(k)]; dup {
		return nil
	}
	old, err := d.s.liveRef(k, d.cutoff)
	switch {
	case err == nil && old.Chat == m.Chat && old.Seq == m.Seq && old.ID == m.ID:
		// The record of this very message: it was purged (retention keeps
		// dedupe records) and an archive import writes it back.
		return nil
	case err == nil:
		return fmt.Errorf("%w: sender %q cmid %q is already stored as chat %q seq %d",
			store.ErrConflict, m.From, m.CMID, old.Chat, old.Seq)
	case errors.Is(err, errCorrupt):
		// Overwriting heals the record; refusing would block the chat.
		d.s.log.Warn("replacing corrupt dedupe record", "sender", m.From, "cmid", m.CMID, "err", err)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if d.seen == nil {
		d.seen = make(map[string]struct{})
	}
	d.seen[string(k)] = struct{}{}

	ref := store.MessageRef{Chat: m.Chat, Seq: m.Seq, ID: m.ID, SentAt: m.SentAt}
	d.buf = encodeRef(d.buf[:0], ref)
	if err := d.b.Set(k, d.buf, nil); err != nil {
		return err
	}
	return d.b.Set(expiryKey(m.SentAt, m.From, m.CMID), nil, nil)
}

// SweepExpired deletes the dedupe records, of chat and of device messages,
// whose message is older than store.DedupeWindow, with their expiry-index
// entries, and returns how many records it deleted. The background sweeper
// calls it every SweepInterval.
func (s *Store) SweepExpired(ctx context.Context) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, fmt.Errorf("pebble: sweep: %w", err)
	}
	defer s.mu.RUnlock()

	cutoff := s.now().Add(-store.DedupeWindow)
	total := 0
	for _, sp := range []dedupeSpace{chatDedupe, deviceDedupe} {
		n, err := s.sweepSpace(ctx, sp, cutoff)
		total += n
		if err != nil {
			return total, fmt.Errorf("pebble: sweep: %w", err)
		}
	}
	return total, nil
}

// sweepSpace deletes one space's expired records, a chunk at a time.
func (s *Store) sweepSpace(ctx context.Context, sp dedupeSpace, cutoff time.Time) (int, error) {
	lower, upper := []byte(sp.expiry), sp.expiryUpper(cutoff)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		keys, err := s.indexKeys(ctx, lower, upper, sweepChunk)
		if err != nil {
			return total, err
		}
		n, err := s.deleteExpired(sp, keys, cutoff)
		total += n
		if err != nil {
			return total, err
		}
		if len(keys) < sweepChunk {
			return total, nil
		}
		// The smallest key after the last one seen.
		lower = append(keys[len(keys)-1], 0)
	}
}

// indexKeys copies up to n keys of [lower, upper), so no iterator stays open
// while the sweeper holds dedupeMu.
func (s *Store) indexKeys(ctx context.Context, lower, upper []byte, n int) ([][]byte, error) {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for ok := it.First(); ok && len(keys) < n; ok = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()...))
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return keys, nil
}

// deleteExpired removes the given index entries and the records they point
// at, unless a record has since been replaced by a live one. It does not
// sync: a sweep lost in a crash is simply redone.
func (s *Store) deleteExpired(sp dedupeSpace, indexKeys [][]byte, cutoff time.Time) (int, error) {
	if len(indexKeys) == 0 {
		return 0, nil
	}
	s.dedupeMu.Lock()
	defer s.dedupeMu.Unlock()

	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	for _, xk := range indexKeys {
		if dk, ok := sp.recordFromExpiry(xk); ok {
			del, err := s.sweepable(sp, dk, cutoff)
			if err != nil {
				return 0, err
			}
			if del {
				if err := b.Delete(dk, nil); err != nil {
					return 0, err
				}
				n++
			}
		}
		if err := b.Delete(xk, nil); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, err
	}
	return n, nil
}

// sweepable reports whether the record at k exists and is expired (or
// unreadable). A live record means the key was reused after expiry; the new
// record has its own index entry.
func (s *Store) sweepable(sp dedupeSpace, k []byte, cutoff time.Time) (bool, error) {
	v, err := s.get(k)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var sentAt time.Time
	if sp == deviceDedupe {
		var m store.DeviceMessage
		m, err = decodeDeviceRef(v)
		sentAt = m.SentAt
	} else {
		var ref store.MessageRef
		ref, err = decodeRef(v)
		sentAt = ref.SentAt
	}
	return err != nil || sentAt.Before(cutoff), nil
}

// sweepLoop runs SweepExpired until Close cancels ctx.
func (s *Store) sweepLoop(ctx context.Context, every time.Duration) {
	defer close(s.sweepDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		n, err := s.SweepExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("dedupe sweep failed", "deleted", n, "err", err)
		case n > 0:
			s.log.Debug("dedupe sweep", "deleted", n, "took", time.Since(start))
		}
	}
}
