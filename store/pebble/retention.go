package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// Purges leave "mp/{chat}" → the highest purged seq (8 bytes BE), so that
// LastSeq and FirstSeq stay right when a purge empties a chat: the chat's
// writer must never hand out a purged seq again.
//
// Retention settings are "rt/{chat}\x00{uid}" → version, period (ms),
// updated_at; uid "" is a group's chat-wide setting.
const (
	prefixPurged    = "mp/"
	prefixRetention = "rt/"
	retentionV1     = 1
)

func purgedKey(chat string) []byte { return append([]byte(prefixPurged), chat...) }

// purgedThrough reads chat's purge marker, 0 when it has none.
func (s *Store) purgedThrough(chat string) (uint64, error) {
	v, closer, err := s.db.Get(purgedKey(chat))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("chat %q: bad purge marker: %w", chat, errCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// PurgeMessages walks the chat's head and deletes what it passed with two
// range deletes (messages, their reactions) and the new marker, in one
// synced batch. It holds the chat's change lock: an edit or reaction
// committing meanwhile would otherwise write its purged target back.
func (s *Store) PurgeMessages(ctx context.Context, chat string, before time.Time, limit int) (int, uint64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	defer s.mu.RUnlock()
	if limit <= 0 {
		return 0, 0, fmt.Errorf("pebble: purge: limit %d, want > 0", limit)
	}
	if err := checkKeyPart(chat); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	mu := s.changeLocks.of(chat)
	mu.Lock()
	defer mu.Unlock()

	lower, upper := chatBounds(chat)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	var (
		n         int
		lo, hi    uint64 // purged seqs, inclusive
		next      uint64 // the first seq kept, 0 when none is
		m         store.Message
		iterError error
	)
	for ok := it.First(); ok; ok = it.Next() {
		if iterError = decodeEntry(chat, it.Key(), it.Value(), &m); iterError != nil {
			break
		}
		if n == limit || !m.SentAt.Before(before) {
			next = m.Seq
			break
		}
		if n == 0 {
			lo = m.Seq
		}
		hi = m.Seq
		n++
	}
	if err := errors.Join(iterError, it.Close()); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	if n == 0 {
		first, err := s.firstSeq(ctx, chat)
		if err != nil {
			return 0, 0, fmt.Errorf("pebble: purge: %w", err)
		}
		return 0, first, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	prefix := lower
	if err := b.DeleteRange(seqKey(prefix, lo), seqKey(prefix, hi+1), nil); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	if err := b.DeleteRange(reactionSeqKey(chat, lo), reactionSeqKey(chat, hi+1), nil); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	if err := b.Set(purgedKey(chat), binary.BigEndian.AppendUint64(nil, hi), nil); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	if err := commit(ctx, b); err != nil {
		return 0, 0, fmt.Errorf("pebble: purge: %w", err)
	}
	if next == 0 {
		next = hi + 1
	}
	return n, next, nil
}

// FirstSeq reads the chat's first key, or its purge marker when it has none.
func (s *Store) FirstSeq(ctx context.Context, chat string) (uint64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, fmt.Errorf("pebble: first seq: %w", err)
	}
	defer s.mu.RUnlock()
	seq, err := s.firstSeq(ctx, chat)
	if err != nil {
		return 0, fmt.Errorf("pebble: first seq: %w", err)
	}
	return seq, nil
}

func (s *Store) firstSeq(ctx context.Context, chat string) (uint64, error) {
	lower, upper := chatBounds(chat)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	var seq uint64
	if it.First() {
		var ok bool
		if seq, ok = seqFromKey(it.Key()); !ok {
			err = fmt.Errorf("chat %q: bad key: %w", chat, errCorrupt)
		}
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return 0, err
	}
	if seq > 0 {
		return seq, nil
	}
	purged, err := s.purgedThrough(chat)
	if err != nil {
		return 0, err
	}
	return purged + 1, nil
}

// ListChats skips from chat to chat with one seek each: past a chat's
// messages is the next chat's first key.
func (s *Store) ListChats(ctx context.Context, after string, limit int) ([]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: list chats: %w", err)
	}
	defer s.mu.RUnlock()
	if limit <= 0 {
		return nil, fmt.Errorf("pebble: list chats: limit %d, want > 0", limit)
	}
	lower := []byte(prefixMessage)
	if after != "" {
		_, lower = chatBounds(after)
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(prefixMessage), UpperBound: prefixUpper(prefixMessage)})
	if err != nil {
		return nil, fmt.Errorf("pebble: list chats: %w", err)
	}
	var out []string
	for ok := it.SeekGE(lower); ok && len(out) < limit; {
		k := it.Key()[len(prefixMessage):]
		i := bytes.IndexByte(k, sep)
		if i < 0 {
			err = fmt.Errorf("bad message key %q: %w", it.Key(), errCorrupt)
			break
		}
		chat := string(k[:i])
		out = append(out, chat)
		_, next := chatBounds(chat)
		ok = it.SeekGE(next)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: list chats: %w", err)
	}
	return out, nil
}

// prefixUpper is the smallest key above every key starting with p.
func prefixUpper(p string) []byte {
	b := []byte(p)
	b[len(b)-1]++
	return b
}

func (s *Store) SetRetention(ctx context.Context, r store.RetentionSetting) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: set retention: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(r.Chat), checkKeyPart(r.UserID)); err != nil {
		return fmt.Errorf("pebble: set retention: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	key := pairKey(prefixRetention, r.Chat, r.UserID)
	var err error
	if r.Period <= 0 {
		err = b.Delete(key, nil)
	} else {
		v := binary.BigEndian.AppendUint64([]byte{retentionV1}, uint64(r.Period.Milliseconds()))
		err = b.Set(key, appendTime(v, r.UpdatedAt), nil)
	}
	if err == nil {
		err = commit(ctx, b)
	}
	if err != nil {
		return fmt.Errorf("pebble: set retention: %w", err)
	}
	return nil
}

func (s *Store) Retention(ctx context.Context, chat string) ([]store.RetentionSetting, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: retention: %w", err)
	}
	defer s.mu.RUnlock()
	lower, upper := pairBounds(prefixRetention, chat)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: retention: %w", err)
	}
	out := []store.RetentionSetting{}
	for ok := it.First(); ok; ok = it.Next() {
		uid, _ := pairSecond(it.Key(), prefixRetention, chat)
		v := it.Value()
		if len(v) < 9 || v[0] != retentionV1 {
			err = fmt.Errorf("retention of %q/%q: %w", chat, uid, errCorrupt)
			break
		}
		d := decoder{b: v[9:]}
		r := store.RetentionSetting{
			Chat: chat, UserID: uid,
			Period:    time.Duration(binary.BigEndian.Uint64(v[1:9])) * time.Millisecond,
			UpdatedAt: d.time(),
		}
		if d.err != nil {
			err = fmt.Errorf("retention of %q/%q: %w", chat, uid, d.err)
			break
		}
		out = append(out, r)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: retention: %w", err)
	}
	return out, nil
}

func (s *Store) RetentionChats(ctx context.Context, after string, limit int) ([]string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: retention chats: %w", err)
	}
	defer s.mu.RUnlock()
	if limit <= 0 {
		return nil, fmt.Errorf("pebble: retention chats: limit %d, want > 0", limit)
	}
	lower := []byte(prefixRetention)
	if after != "" {
		_, lower = pairBounds(prefixRetention, after)
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(prefixRetention), UpperBound: prefixUpper(prefixRetention)})
	if err != nil {
		return nil, fmt.Errorf("pebble: retention chats: %w", err)
	}
	var out []string
	for ok := it.SeekGE(lower); ok && len(out) < limit; {
		k := it.Key()[len(prefixRetention):]
		i := bytes.IndexByte(k, sep)
		if i < 0 {
			err = fmt.Errorf("bad retention key %q: %w", it.Key(), errCorrupt)
			break
		}
		chat := string(k[:i])
		out = append(out, chat)
		_, next := pairBounds(prefixRetention, chat)
		ok = it.SeekGE(next)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: retention chats: %w", err)
	}
	return out, nil
}

// FirstSeqs is one seek per chat, all local reads.
func (s *Store) FirstSeqs(ctx context.Context, chats []string) (map[string]uint64, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: first seqs: %w", err)
	}
	defer s.mu.RUnlock()
	out := make(map[string]uint64, len(chats))
	for _, c := range chats {
		seq, err := s.firstSeq(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("pebble: first seqs: %w", err)
		}
		out[c] = seq
	}
	return out, nil
}
