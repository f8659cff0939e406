package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// Attachments are "at/{id}" → the record with its chats; "au/{created ms,
// 8 bytes big-endian}{id}" indexes the ones no chat references yet, oldest
// first, for the janitor; "aq/{uid}\x00{day}" → the day's uploaded bytes.
const (
	prefixAttachment      = "at/"
	prefixAttachUnrefered = "au/"
	prefixAttachUsage     = "aq/"
	attachmentV1          = 1
)

func attachmentKey(id string) []byte { return append([]byte(prefixAttachment), id...) }

func unreferencedKey(created time.Time, id string) []byte {
	k := append([]byte(prefixAttachUnrefered), make([]byte, 8)...)
	binary.BigEndian.PutUint64(k[len(prefixAttachUnrefered):], uint64(max(created.UnixMilli(), 0)))
	return append(k, id...)
}

// encodeAttachment leaves out ID: it is in the key.
func encodeAttachment(a *store.Attachment) []byte {
	b := []byte{attachmentV1}
	b = appendString(b, a.Owner)
	b = binary.AppendVarint(b, a.Size)
	b = appendString(b, a.SHA256)
	b = appendString(b, a.ContentType)
	for _, n := range []int{a.Width, a.Height, a.ThumbWidth, a.ThumbHeight} {
		b = binary.AppendUvarint(b, uint64(max(n, 0)))
	}
	b = appendTime(b, a.CreatedAt)
	b = binary.AppendUvarint(b, uint64(len(a.Chats)))
	for _, c := range a.Chats {
		b = appendString(b, c)
	}
	return b
}

func decodeAttachment(id string, v []byte) (store.Attachment, error) {
	d := decoder{b: v}
	if d.byte() != attachmentV1 {
		return store.Attachment{}, errCorrupt
	}
	a := store.Attachment{ID: id, Owner: d.string(), Size: d.varint(), SHA256: d.string(), ContentType: d.string()}
	for _, p := range []*int{&a.Width, &a.Height, &a.ThumbWidth, &a.ThumbHeight} {
		*p = int(d.uvarint())
	}
	a.CreatedAt = d.time()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each chat takes at least its length byte
		d.fail()
	}
	for range n {
		a.Chats = append(a.Chats, d.string())
	}
	return a, d.finish()
}

func (s *Store) PutAttachment(ctx context.Context, a store.Attachment) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put attachment: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(a.ID), checkKeyPart(a.Owner)); err != nil || a.ID == "" {
		return fmt.Errorf("pebble: put attachment %q: %w", a.ID, errors.Join(err, errBadID))
	}
	mu := s.attachLocks.of(prefixAttachment + a.ID)
	mu.Lock()
	defer mu.Unlock()
	key := attachmentKey(a.ID)
	switch ok, err := s.exists(key); {
	case err != nil:
		return fmt.Errorf("pebble: put attachment %q: %w", a.ID, err)
	case ok:
		return fmt.Errorf("pebble: put attachment %q: %w", a.ID, store.ErrConflict)
	}
	a.Chats = nil
	batch := s.db.NewBatch()
	defer batch.Close()
	err := errors.Join(
		batch.Set(key, encodeAttachment(&a), nil),
		batch.Set(unreferencedKey(a.CreatedAt, a.ID), nil, nil),
	)
	if err == nil {
		err = commit(ctx, batch)
	}
	if err != nil {
		return fmt.Errorf("pebble: put attachment %q: %w", a.ID, err)
	}
	return nil
}

func (s *Store) Attachment(ctx context.Context, id string) (store.Attachment, error) {
	if err := s.begin(ctx); err != nil {
		return store.Attachment{}, fmt.Errorf("pebble: attachment: %w", err)
	}
	defer s.mu.RUnlock()
	a, err := s.attachment(id)
	if err != nil {
		return store.Attachment{}, fmt.Errorf("pebble: attachment %q: %w", id, err)
	}
	return a, nil
}

func (s *Store) attachment(id string) (store.Attachment, error) {
	if checkKeyPart(id) != nil {
		return store.Attachment{}, store.ErrNotFound
	}
	v, err := s.get(attachmentKey(id))
	if err != nil {
		return store.Attachment{}, err
	}
	return decodeAttachment(id, v)
}

func (s *Store) MarkAttachmentReferenced(ctx context.Context, id, chat string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: reference attachment: %w", err)
	}
	defer s.mu.RUnlock()
	mu := s.attachLocks.of(prefixAttachment + id)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.attachment(id)
	if err != nil {
		return fmt.Errorf("pebble: reference attachment %q: %w", id, err)
	}
	i, found := slices.BinarySearch(a.Chats, chat)
	if found {
		return nil
	}
	first := !a.Referenced()
	a.Chats = slices.Insert(a.Chats, i, chat)
	batch := s.db.NewBatch()
	defer batch.Close()
	err = batch.Set(attachmentKey(id), encodeAttachment(&a), nil)
	if err == nil && first {
		err = batch.Delete(unreferencedKey(a.CreatedAt, id), nil)
	}
	if err == nil {
		err = commit(ctx, batch)
	}
	if err != nil {
		return fmt.Errorf("pebble: reference attachment %q: %w", id, err)
	}
	return nil
}

func (s *Store) UnreferencedAttachments(ctx context.Context, before time.Time, limit int) ([]store.Attachment, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: unreferenced attachments: %w", err)
	}
	defer s.mu.RUnlock()
	out := []store.Attachment{}
	if limit <= 0 {
		return out, nil
	}
	upper := unreferencedKey(before, "")
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(prefixAttachUnrefered), UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: unreferenced attachments: %w", err)
	}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		id := string(it.Key()[len(prefixAttachUnrefered)+8:])
		a, aerr := s.attachment(id)
		if aerr != nil {
			err = fmt.Errorf("attachment %q: %w", id, aerr)
			break
		}
		out = append(out, a)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: unreferenced attachments: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteAttachment(ctx context.Context, id string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: delete attachment: %w", err)
	}
	defer s.mu.RUnlock()
	mu := s.attachLocks.of(prefixAttachment + id)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.attachment(id)
	if err != nil {
		return fmt.Errorf("pebble: delete attachment %q: %w", id, err)
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	err = errors.Join(batch.Delete(attachmentKey(id), nil), batch.Delete(unreferencedKey(a.CreatedAt, id), nil))
	if err == nil {
		err = commit(ctx, batch)
	}
	if err != nil {
		return fmt.Errorf("pebble: delete attachment %q: %w", id, err)
	}
	return nil
}

func (s *Store) AddAttachmentUsage(ctx context.Context, uid, day string, n, limit int64) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, fmt.Errorf("pebble: attachment usage: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(uid), checkKeyPart(day)); err != nil {
		return 0, fmt.Errorf("pebble: attachment usage of %q: %w", uid, err)
	}
	key := pairKey(prefixAttachUsage, uid, day)
	mu := s.attachLocks.of(string(key))
	mu.Lock()
	defer mu.Unlock()
	var total int64
	switch v, err := s.get(key); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return 0, fmt.Errorf("pebble: attachment usage of %q: %w", uid, err)
	default:
		d := decoder{b: v}
		total = d.varint()
		if err := d.finish(); err != nil {
			return 0, fmt.Errorf("pebble: attachment usage of %q: %w", uid, err)
		}
	}
	if n == 0 {
		return total, nil
	}
	if total+n > limit {
		return total, fmt.Errorf("pebble: attachment usage of %q: %w", uid, store.ErrQuotaExceeded)
	}
	total += n
	batch := s.db.NewBatch()
	defer batch.Close()
	err := batch.Set(key, binary.AppendVarint(nil, total), nil)
	if err == nil {
		err = commit(ctx, batch)
	}
	if err != nil {
		return 0, fmt.Errorf("pebble: attachment usage of %q: %w", uid, err)
	}
	return total, nil
}
