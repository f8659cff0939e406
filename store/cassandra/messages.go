package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/mqchat/mqchat/store"
)

// BucketSize is how many seqs share a messages partition.
const BucketSize = 4096

func bucketOf(seq uint64) int64 { return int64(seq / BucketSize) }

// appendParallel bounds how many chats of one batch are written at once.
const appendParallel = 16

const (
	insertMessage = `INSERT INTO messages (chat_id, bucket, seq, id, sender, cmid, type, body, reply_to, sent_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`
	insertDedupe = `INSERT INTO dedupe (sender, cmid, chat_id, seq, id, sent_at) VALUES (?, ?, ?, ?, ?, ?)
		IF NOT EXISTS USING TTL ?`
	replaceDedupe = `UPDATE dedupe USING TTL ? SET chat_id = ?, seq = ?, id = ?, sent_at = ?
		WHERE sender = ? AND cmid = ? IF id = ?`
	undoDedupe    = `DELETE FROM dedupe WHERE sender = ? AND cmid = ? IF id = ?`
	insertBucket  = `INSERT INTO chat_buckets (chat_id, bucket) VALUES (?, ?)`
	selectIDAtSeq = `SELECT id FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?`
)

// takeoverAge is how old a dedupe record whose message was never stored
// must be before another writer may replace it. Younger, it may belong to
// an append still in flight; older, its writer has given up (every append
// is bounded by the driver's timeout and the caller's deadline).
const takeoverAge = 2 * time.Minute

// AppendMessages writes each chat's messages in seq order, chats in
// parallel; see the package comment for the order of the conditional
// writes and why a chat stops at its first failure. Within one call the
// first message of a (From, CMID) gets the dedupe record. A (chat, seq)
// that is taken, or a (From, CMID) with a live record, fails the chat with
// store.ErrConflict before any of its messages in that partition is
// stored.
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

	// Read-only: a change whose target is missing fails the batch before
	// anything is written.
	plan, err := s.planChanges(ctx, msgs)
	if err != nil {
		return fmt.Errorf("cassandra: append: %w", ctxErr(ctx, err))
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
			if err := s.appendChat(ctx, msgs, byChat[chat], withRecord, now, plan); err != nil {
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

// appendChat writes one chat's messages partition by partition (a batch
// crosses at most a bucket boundary or two), stopping at the first failure
// so that what is stored stays a prefix.
//
// With a plan, the changes to rows of other partitions follow the chat's
// messages (see changes.go).
func (s *Store) appendChat(ctx context.Context, msgs []store.Message, idx []int, withRecord []bool, now time.Time, plan *changePlan) error {
	chat := msgs[idx[0]].Chat
	written := make(map[int64]bool, 2)
	for len(idx) > 0 {
		bucket := bucketOf(msgs[idx[0]].Seq)
		n := 1
		for n < len(idx) && bucketOf(msgs[idx[n]].Seq) == bucket {
			n++
		}
		if err := s.appendPartition(ctx, msgs, idx[:n], bucket, withRecord, now, plan); err != nil {
			m := &msgs[idx[0]]
			return fmt.Errorf("chat %q from seq %d: %w", m.Chat, m.Seq, err)
		}
		written[bucket] = true
		idx = idx[n:]
	}
	if plan != nil {
		return s.applyRest(ctx, plan, chat, written)
	}
	return nil
}

// appendPartition stores the messages idx of one (chat, bucket) partition:
//
//  1. the dedupe records, each a conditional insert (its own partition);
//  2. the bucket row, a plain idempotent insert, so LastSeq finds the
//     partition whenever a message is in it;
//  3. the messages, one conditional batch: one Paxos round for them all,
//     applied all or none.
//
// Records come first so that a (sender, cmid) conflict is found before any
// message exists: messages, once stored, are never deleted (another writer
// may already have continued the chat after them). When step 3 finds a
// taken seq, the records of step 1 point at messages that will never exist
// and are deleted again, each only if it is still ours.
func (s *Store) appendPartition(ctx context.Context, msgs []store.Message, idx []int, bucket int64, withRecord []bool, now time.Time, plan *changePlan) error {
	claimed, err := s.claimRecords(ctx, msgs, idx, withRecord, now)
	if err != nil {
		return errors.Join(err, s.undoRecords(ctx, msgs, claimed))
	}
	chat := msgs[idx[0]].Chat
	if err := s.s.Query(insertBucket, chat, bucket).WithContext(ctx).Exec(); err != nil {
		return errors.Join(err, s.undoRecords(ctx, msgs, claimed))
	}
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	for _, i := range idx {
		m := &msgs[i]
		if plan != nil {
			cql, args := plan.insert(m, bucket)
			b.Query(cql, args...)
			continue
		}
		b.Query(insertMessage, m.Chat, bucket, int64(m.Seq), int64(m.ID), m.From, []byte(m.CMID), m.Type,
			nonNil(m.Body), int64(m.ReplyTo), m.SentAt)
	}
	if plan != nil {
		// Same partition: applied with the messages, or not at all.
		for _, st := range plan.updates(chat, bucket, false) {
			b.Query(st.cql, st.args...)
		}
	}
	applied, iter, err := s.s.MapExecuteBatchCAS(b, map[string]any{})
	if iter != nil {
		err = errors.Join(err, iter.Close())
	}
	if err != nil {
		// The outcome is unknown: a timed-out Paxos round may still be
		// completed by the next one on this partition, so the records stay
		// (see the package comment).
		return err
	}
	if !applied {
		conflict := fmt.Errorf("%w: a seq of bucket %d is taken", store.ErrConflict, bucket)
		return errors.Join(conflict, s.undoRecords(ctx, msgs, claimed))
	}
	return nil
}

// claimRecords writes the dedupe records of idx concurrently and returns
// the indexes of those it wrote, also on error, so the caller can undo them.
func (s *Store) claimRecords(ctx context.Context, msgs []store.Message, idx []int, withRecord []bool, now time.Time) ([]int, error) {
	var (
		g       errgroup.Group
		mu      sync.Mutex
		claimed []int
	)
	g.SetLimit(appendParallel)
	for _, i := range idx {
		if !withRecord[i] {
			continue
		}
		g.Go(func() error {
			if err := s.claimRecord(ctx, &msgs[i], now); err != nil {
				return err
			}
			mu.Lock()
			claimed = append(claimed, i)
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return claimed, err
}

// claimRecord makes m the message of its (From, CMID): it inserts the
// record if there is none, or replaces one that no longer counts (outside
// the window, or left behind by an append that never stored its message),
// each as a compare-and-set. A record that counts is store.ErrConflict.
func (s *Store) claimRecord(ctx context.Context, m *store.Message, now time.Time) error {
	ttl := dedupeTTL(m.SentAt, now)
	cmid := []byte(m.CMID)
	prev := map[string]any{}
	applied, err := s.s.Query(insertDedupe, m.From, cmid, m.Chat, int64(m.Seq), int64(m.ID), m.SentAt, ttl).
		WithContext(ctx).MapScanCAS(prev)
	if err != nil || applied {
		return err
	}
	chat, _ := prev["chat_id"].(string)
	seq, _ := prev["seq"].(int64)
	id, _ := prev["id"].(int64)
	sentAt, _ := prev["sent_at"].(time.Time)
	if chat == m.Chat && seq == int64(m.Seq) && id == int64(m.ID) {
		// The record of this very message: it was purged (retention keeps
		// dedupe records) and an archive import writes it back.
		return nil
	}
	stale, err := s.staleRecord(ctx, chat, seq, id, sentAt, now)
	if err != nil {
		return err
	}
	if !stale {
		return fmt.Errorf("%w: sender %q cmid %q is already stored as chat %q seq %d",
			store.ErrConflict, m.From, m.CMID, chat, seq)
	}
	applied, err = s.s.Query(replaceDedupe, ttl, m.Chat, int64(m.Seq), int64(m.ID), m.SentAt, m.From, cmid, id).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return err
	}
	if !applied {
		return fmt.Errorf("%w: sender %q cmid %q was claimed concurrently", store.ErrConflict, m.From, m.CMID)
	}
	return nil
}

// staleRecord reports whether an existing record may be replaced: it is
// outside the window, or its message is not stored and its writer has had
// takeoverAge to store it. The message is read at serial consistency, which
// first completes any Paxos round left in flight on its partition: after an
// append that timed out once its proposal was accepted, the record is seen
// to count, and the sender's retry is answered as its duplicate.
func (s *Store) staleRecord(ctx context.Context, chat string, seq, id int64, sentAt, now time.Time) (bool, error) {
	if sentAt.Before(now.Add(-store.DedupeWindow)) {
		return true, nil
	}
	var stored int64
	// gocql types serial levels apart, but the protocol takes LOCAL_SERIAL
	// (0x09) as a read's consistency: that is a serial read.
	err := s.s.Query(selectIDAtSeq, chat, bucketOf(uint64(seq)), seq).WithContext(ctx).
		Consistency(gocql.Consistency(gocql.LocalSerial)).Scan(&stored)
	switch {
	case err == nil && stored == id:
		return false, nil
	case err != nil && !errors.Is(err, gocql.ErrNotFound):
		return false, err
	}
	return sentAt.Before(now.Add(-takeoverAge)), nil
}

// undoRecords deletes the records claimed for messages that will not be
// stored, each only while it still names that message. It runs even when
// ctx has ended: a left-over record would hold its (sender, cmid) for
// takeoverAge.
func (s *Store) undoRecords(ctx context.Context, msgs []store.Message, claimed []int) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, i := range claimed {
		m := &msgs[i]
		_, err := s.s.Query(undoDedupe, m.From, []byte(m.CMID), int64(m.ID)).WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil {
			errs = append(errs, fmt.Errorf("undo dedupe record of sender %q cmid %q: %w", m.From, m.CMID, err))
		}
	}
	return errors.Join(errs...)
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
// reads. A bucket row is written before its partition's messages, and a
// conditional batch that finds a taken seq stores none of them, so the
// newest listed bucket can be empty; the walk then goes on to the one
// before it.
func (s *Store) LastSeq(ctx context.Context, chat string) (uint64, error) {
	fail := func(err error) (uint64, error) {
		return 0, fmt.Errorf("cassandra: last seq of %q: %w", chat, ctxErr(ctx, err))
	}
	iter := s.s.Query(`SELECT bucket FROM chat_buckets WHERE chat_id = ?`, chat).WithContext(ctx).Iter()
	var b int64
	for iter.Scan(&b) {
		var seq int64
		err := s.s.Query(`SELECT seq FROM messages WHERE chat_id = ? AND bucket = ? ORDER BY seq DESC LIMIT 1`, chat, b).
			WithContext(ctx).Scan(&seq)
		if errors.Is(err, gocql.ErrNotFound) {
			continue
		}
		if err != nil {
			return fail(errors.Join(err, iter.Close()))
		}
		if err := iter.Close(); err != nil {
			return fail(err)
		}
		return uint64(seq), nil
	}
	if err := iter.Close(); err != nil {
		return fail(err)
	}
	// A chat emptied by retention keeps counting from its purge marker.
	p, err := s.purgedThrough(ctx, chat)
	if err != nil {
		return fail(err)
	}
	return p, nil
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
	selectForward = `SELECT seq, id, sender, cmid, type, body, reply_to, sent_at,
		change_kind, change_target, change_emoji, edited_at, deleted_at, reactions FROM messages
		WHERE chat_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?`
	selectBackward = `SELECT seq, id, sender, cmid, type, body, reply_to, sent_at,
		change_kind, change_target, change_emoji, edited_at, deleted_at, reactions FROM messages
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
			m                        store.Message
			seq, id, replyTo, target int64
			cmid                     []byte
			kind, emoji              string
			edited, deleted          time.Time
			reactions                []string
		)
		n := iter.NumRows()
		for range n {
			if !iter.Scan(&seq, &id, &m.From, &cmid, &m.Type, &m.Body, &replyTo, &m.SentAt,
				&kind, &target, &emoji, &edited, &deleted, &reactions) {
				break
			}
			m.Chat, m.Seq, m.ID, m.ReplyTo, m.CMID = chat, uint64(seq), uint64(id), uint64(replyTo), string(cmid)
			resolve(&m, kind, target, emoji, edited, deleted, reactions)
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
	// counts only once its message is stored. Records are written before
	// their messages (see appendPartition), so one may be read while its
	// append is still in flight, or after an append that timed out and
	// never stored its message.
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
