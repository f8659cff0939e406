package cassandra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// purgedThrough reads the chat's purge marker, 0 when it has none.
func (s *Store) purgedThrough(ctx context.Context, chat string) (uint64, error) {
	var p int64
	err := s.s.Query(`SELECT purged_through FROM message_purges WHERE chat_id = ?`, chat).WithContext(ctx).Scan(&p)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, nil
	}
	return uint64(p), err
}

// bucketsAscending lists the chat's buckets oldest first.
func (s *Store) bucketsAscending(ctx context.Context, chat string) ([]int64, error) {
	iter := s.s.Query(`SELECT bucket FROM chat_buckets WHERE chat_id = ? ORDER BY bucket ASC`, chat).WithContext(ctx).Iter()
	var out []int64
	var b int64
	for iter.Scan(&b) {
		out = append(out, b)
	}
	return out, iter.Close()
}

// PurgeMessages walks the chat's buckets oldest first. A bucket whose every
// message is purgeable (and that is not the newest, which the writer still
// fills) goes as a whole partition, a partition tombstone that costs
// compaction nothing per row; otherwise a range tombstone covers the
// purgeable slice. The purge marker is written first, so LastSeq never
// reads an emptied chat as new.
func (s *Store) PurgeMessages(ctx context.Context, chat string, before time.Time, limit int) (int, uint64, error) {
	fail := func(err error) (int, uint64, error) {
		return 0, 0, fmt.Errorf("cassandra: purge %q: %w", chat, ctxErr(ctx, err))
	}
	if limit <= 0 {
		return fail(fmt.Errorf("limit %d, want > 0", limit))
	}
	buckets, err := s.bucketsAscending(ctx, chat)
	if err != nil {
		return fail(err)
	}
	type cut struct {
		bucket, lo, hi int64
		whole          bool
	}
	var (
		cuts []cut
		n    int
		next uint64
	)
scan:
	for i, b := range buckets {
		iter := s.s.Query(`SELECT seq, sent_at FROM messages WHERE chat_id = ? AND bucket = ? ORDER BY seq ASC LIMIT ?`,
			chat, b, limit-n+1).WithContext(ctx).Iter()
		var (
			seq    int64
			sentAt time.Time
			c      = cut{bucket: b, lo: -1}
		)
		for iter.Scan(&seq, &sentAt) {
			if n == limit || !sentAt.Before(before) {
				next = uint64(seq)
				break
			}
			if c.lo < 0 {
				c.lo = seq
			}
			c.hi = seq
			n++
		}
		if err := iter.Close(); err != nil {
			return fail(err)
		}
		if c.lo >= 0 {
			c.whole = next == 0 && i < len(buckets)-1
			cuts = append(cuts, c)
		}
		if next != 0 {
			break scan
		}
	}
	if n == 0 {
		first, err := s.firstSeq(ctx, chat, buckets)
		if err != nil {
			return fail(err)
		}
		return 0, first, nil
	}
	hi := cuts[len(cuts)-1].hi
	if err := s.s.Query(`UPDATE message_purges SET purged_through = ? WHERE chat_id = ?`, hi, chat).
		WithContext(ctx).Exec(); err != nil {
		return fail(err)
	}
	for _, c := range cuts {
		if c.whole {
			if err := s.s.Query(`DELETE FROM messages WHERE chat_id = ? AND bucket = ?`, chat, c.bucket).
				WithContext(ctx).Exec(); err != nil {
				return fail(err)
			}
			if err := s.s.Query(`DELETE FROM chat_buckets WHERE chat_id = ? AND bucket = ?`, chat, c.bucket).
				WithContext(ctx).Exec(); err != nil {
				return fail(err)
			}
			continue
		}
		if err := s.s.Query(`DELETE FROM messages WHERE chat_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
			chat, c.bucket, c.lo, c.hi).WithContext(ctx).Exec(); err != nil {
			return fail(err)
		}
	}
	if next == 0 {
		next = uint64(hi) + 1
	}
	return n, next, nil
}

// FirstSeq reads the first row of the oldest non-empty bucket, or the
// purge marker when there is none.
func (s *Store) FirstSeq(ctx context.Context, chat string) (uint64, error) {
	buckets, err := s.bucketsAscending(ctx, chat)
	if err == nil {
		var first uint64
		if first, err = s.firstSeq(ctx, chat, buckets); err == nil {
			return first, nil
		}
	}
	return 0, fmt.Errorf("cassandra: first seq of %q: %w", chat, ctxErr(ctx, err))
}

func (s *Store) firstSeq(ctx context.Context, chat string, buckets []int64) (uint64, error) {
	for _, b := range buckets {
		var seq int64
		err := s.s.Query(`SELECT seq FROM messages WHERE chat_id = ? AND bucket = ? ORDER BY seq ASC LIMIT 1`, chat, b).
			WithContext(ctx).Scan(&seq)
		if errors.Is(err, gocql.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return uint64(seq), nil
	}
	p, err := s.purgedThrough(ctx, chat)
	if err != nil {
		return 0, err
	}
	return p + 1, nil
}

// FirstSeqs reads chat by chat: a chat list is one screen, and each read
// is one or two single-partition queries.
func (s *Store) FirstSeqs(ctx context.Context, chats []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(chats))
	for _, c := range chats {
		if _, done := out[c]; done {
			continue
		}
		first, err := s.FirstSeq(ctx, c)
		if err != nil {
			return nil, err
		}
		out[c] = first
	}
	return out, nil
}
