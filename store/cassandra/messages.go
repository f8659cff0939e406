package cassandra

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/mqchat/mqchat/store"
)

// BucketSize is how many seqs share a messages partition.
const BucketSize = 4096

func bucketOf(seq uint64) int64 { return int64(seq / BucketSize) }

// appendParallel bounds how many chats of one batch are written at once.
const appendParallel = 16

const (
	insertMessage = `INSERT INTO messages (chat_id, bucket, seq, id, sender, cmid, type, body, reply_to, sent_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertDedupe = `INSERT INTO dedupe (sender, cmid, chat_id, seq, id, sent_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`
	insertBucket = `INSERT INTO chat_buckets (chat_id, bucket) VALUES (?, ?)`
)

// AppendMessages writes each chat's messages in seq order, chats in
// parallel; see the package comment for why a chat stops at its first
// failure. Within one call the first message of a (From, CMID) gets the
// dedupe record; across calls the caller (the chat writer) has already
// looked the pair up, so a plain upsert never replaces a live record.
func (s *Store) AppendMessages(ctx context.Context, msgs []store.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cassandra: append: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	now := s.now()
	seen := make(map[[2]string]bool)
	withRecord := make([]bool, len(msgs))
	var order []string
	byChat := make(map[string][]int)
	for i, m := range msgs {
		if m.Seq == 0 || m.Seq > math.MaxInt64 {
			return fmt.Errorf("cassandra: append: chat %q: seq %d out of range", m.Chat, m.Seq)
		}
		if _, ok := byChat[m.Chat]; !ok {
			order = append(order, m.Chat)
		}
		byChat[m.Chat] = append(byChat[m.Chat], i)
		k := [2]string{m.From, m.CMID}
		if m.CMID != "" && !seen[k] && dedupeTTL(m.SentAt, now) > 0 {
			seen[k], withRecord[i] = true, true
		}
	}

	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, appendParallel)
		mu   sync.Mutex
		errs []error
	)
	for _, chat := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.appendChat(ctx, msgs, byChat[chat], withRecord, now); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("cassandra: append: %w", ctxErr(ctx, errs[0]))
	}
	return nil
}

func (s *Store) appendChat(ctx context.Context, msgs []store.Message, idx []int, withRecord []bool, now time.Time) error {
	lastBucket := int64(-1)
	for _, i := range idx {
		m := &msgs[i]
		b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
		bucket := bucketOf(m.Seq)
		b.Query(insertMessage, m.Chat, bucket, int64(m.Seq), int64(m.ID), m.From, []byte(m.CMID), m.Type,
			nonNil(m.Body), int64(m.ReplyTo), m.SentAt)
		if bucket != lastBucket {
			b.Query(insertBucket, m.Chat, bucket)
			lastBucket = bucket
		}
		if withRecord[i] {
			b.Query(insertDedupe, m.From, []byte(m.CMID), m.Chat, int64(m.Seq), int64(m.ID), m.SentAt,
				dedupeTTL(m.SentAt, now))
		}
		if err := s.s.ExecuteBatch(b); err != nil {
			return fmt.Errorf("chat %q seq %d: %w", m.Chat, m.Seq, err)
		}
	}
	return nil
}

// dedupeTTL is the whole seconds left of a record's window, so Cassandra
// drops it when LookupDedupe would stop returning it anyway.
func dedupeTTL(sentAt, now time.Time) int {
	return int(sentAt.Add(store.DedupeWindow).Sub(now) / time.Second)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// newestBucket reads the first row of the chat's bucket list; -1 when the
// chat has no messages.
func (s *Store) newestBucket(ctx context.Context, chat string) (int64, error) {
	var b int64
	err := s.s.Query(`SELECT bucket FROM chat_buckets WHERE chat_id = ? LIMIT 1`, chat).
		WithContext(ctx).Scan(&b)
	if err == gocql.ErrNotFound {
		return -1, nil
	}
	return b, err
}

// LastSeq reads the last row of the newest bucket: two single-partition
// reads.
func (s *Store) LastSeq(ctx context.Context, chat string) (uint64, error) {
	b, err := s.newestBucket(ctx, chat)
	if err != nil {
		return 0, fmt.Errorf("cassandra: last seq of %q: %w", chat, ctxErr(ctx, err))
	}
	if b < 0 {
		return 0, nil
	}
	var seq int64
	err = s.s.Query(`SELECT seq FROM messages WHERE chat_id = ? AND bucket = ? ORDER BY seq DESC LIMIT 1`, chat, b).
		WithContext(ctx).Scan(&seq)
	if err == gocql.ErrNotFound {
		// Bucket rows are written with their first message; an empty
		// bucket means the table was changed by hand.
		return 0, fmt.Errorf("cassandra: last seq of %q: bucket %d is listed but empty", chat, b)
	}
	if err != nil {
		return 0, fmt.Errorf("cassandra: last seq of %q: %w", chat, ctxErr(ctx, err))
	}
	return uint64(seq), nil
}

// pageSize is the driver page size for history reads; a large Limit is
// read in pages of this many rows using the driver's page state.
const pageSize = 500

// History walks buckets forward from After or backward from Before (or
// the newest bucket), reading each bucket's slice in driver pages until
// Limit messages are collected. Seqs are gap-free, so every bucket between
// the first and the newest exists.
func (s *Store) History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("cassandra: history of %q: limit %d, want > 0", chat, q.Limit)
	}
	fail := func(err error) ([]store.Message, error) {
		return nil, fmt.Errorf("cassandra: history of %q: %w", chat, ctxErr(ctx, err))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	newest, err := s.newestBucket(ctx, chat)
	if err != nil {
		return fail(err)
	}
	out := make([]store.Message, 0, min(q.Limit, 256))
	if newest < 0 {
		return out, nil
	}
	hi := uint64(math.MaxInt64) // exclusive
	if q.Before > 0 {
		hi = min(q.Before, hi)
	}
	if q.After > 0 {
		if q.After >= hi-1 {
			return out, nil
		}
		for b := bucketOf(q.After + 1); b <= newest && len(out) < q.Limit; b++ {
			out, err = s.readBucket(ctx, chat, b, int64(q.After), int64(hi), true, q.Limit, out)
			if err != nil {
				return fail(err)
			}
		}
		return out, nil
	}
	if hi <= 1 {
		return out, nil
	}
	for b := min(bucketOf(hi-1), newest); b >= 0 && len(out) < q.Limit; b-- {
		out, err = s.readBucket(ctx, chat, b, 0, int64(hi), false, q.Limit, out)
		if err != nil {
			return fail(err)
		}
	}
	slices.Reverse(out)
	return out, nil
}

const (
	selectForward = `SELECT seq, id, sender, cmid, type, body, reply_to, sent_at FROM messages
		WHERE chat_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?`
	selectBackward = `SELECT seq, id, sender, cmid, type, body, reply_to, sent_at FROM messages
		WHERE chat_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?`
)

// readBucket appends up to limit-len(out) messages of one bucket with
// lo < seq < hi, following the driver's page state.
func (s *Store) readBucket(ctx context.Context, chat string, bucket, lo, hi int64, forward bool, limit int, out []store.Message) ([]store.Message, error) {
	stmt := selectBackward
	if forward {
		stmt = selectForward
	}
	want := limit - len(out)
	var state []byte
	for {
		iter := s.s.Query(stmt, chat, bucket, lo, hi, want).WithContext(ctx).
			PageSize(min(want, pageSize)).PageState(state).Iter()
		state = iter.PageState()
		var (
			m                store.Message
			seq, id, replyTo int64
			cmid             []byte
		)
		n := iter.NumRows()
		for range n {
			if !iter.Scan(&seq, &id, &m.From, &cmid, &m.Type, &m.Body, &replyTo, &m.SentAt) {
				break
			}
			m.Chat, m.Seq, m.ID, m.ReplyTo, m.CMID = chat, uint64(seq), uint64(id), uint64(replyTo), string(cmid)
			out = append(out, m)
			m = store.Message{}
			if len(out) == limit {
				break
			}
		}
		if err := iter.Close(); err != nil {
			return nil, err
		}
		if len(out) == limit || len(state) == 0 {
			return out, nil
		}
	}
}

// LookupDedupe ignores a record past the window even before its TTL has
// removed it (TTLs count whole seconds).
func (s *Store) LookupDedupe(ctx context.Context, sender, cmid string) (store.MessageRef, error) {
	var (
		ref     store.MessageRef
		seq, id int64
	)
	err := s.s.Query(`SELECT chat_id, seq, id, sent_at FROM dedupe WHERE sender = ? AND cmid = ?`, sender, []byte(cmid)).
		WithContext(ctx).Scan(&ref.Chat, &seq, &id, &ref.SentAt)
	if err == nil && ref.SentAt.Before(s.now().Add(-store.DedupeWindow)) {
		err = gocql.ErrNotFound
	}
	if err != nil {
		return store.MessageRef{}, fmt.Errorf("cassandra: lookup dedupe: %w", ctxErr(ctx, err))
	}
	// A hit is rare (a retry), so it can afford a second read: the record
	// counts only while its message still holds the seq. An append that
	// timed out may land after the writer reused its seq for a later
	// message; that message, written with a newer client timestamp, wins the
	// row, and the stale record must not answer the unacknowledged retry
	// with someone else's message.
	var stored int64
	err = s.s.Query(`SELECT id FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?`,
		ref.Chat, bucketOf(uint64(seq)), seq).WithContext(ctx).Scan(&stored)
	if err == nil && stored != id {
		err = gocql.ErrNotFound
	}
	if err != nil {
		return store.MessageRef{}, fmt.Errorf("cassandra: lookup dedupe: %w", ctxErr(ctx, err))
	}
	ref.Seq, ref.ID = uint64(seq), uint64(id)
	return ref, nil
}
