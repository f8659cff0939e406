package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mqchat/mqchat/store"
)

// messageColumns are the per-column arrays of one batch: a whole
// AppendMessages is two statements in one transaction, whatever its size.
type messageColumns struct {
	chats, senders, types []string
	seqs, ids, replies    []int64
	cmids, bodies         [][]byte
	sent                  []time.Time
	// The change columns; nil when no message of the batch is a change,
	// which keeps the plain batch's statement as it was.
	kinds, emoji []string
	targets      []int64
}

func toColumns(msgs []store.Message) (messageColumns, error) {
	n := len(msgs)
	c := messageColumns{
		chats: make([]string, n), senders: make([]string, n), types: make([]string, n),
		seqs: make([]int64, n), ids: make([]int64, n), replies: make([]int64, n),
		cmids: make([][]byte, n), bodies: make([][]byte, n), sent: make([]time.Time, n),
	}
	for i, m := range msgs {
		seq, err := seqArg(m.Seq)
		if err != nil {
			return c, err
		}
		reply, err := seqArg(m.ReplyTo)
		if err != nil {
			return c, err
		}
		c.chats[i], c.senders[i], c.types[i] = m.Chat, m.From, m.Type
		c.seqs[i], c.ids[i], c.replies[i] = seq, int64(m.ID), reply // ids keep their bits
		c.cmids[i], c.bodies[i], c.sent[i] = []byte(m.CMID), nonNil(m.Body), ms(m.SentAt)
		if m.Change == nil {
			continue
		}
		if c.kinds == nil {
			c.kinds, c.emoji, c.targets = make([]string, n), make([]string, n), make([]int64, n)
		}
		c.kinds[i], c.emoji[i], c.targets[i] = string(m.Change.Kind), m.Change.Emoji, int64(m.Change.Target)
	}
	return c, nil
}

const insertMessages = `
INSERT INTO messages (chat_id, seq, id, sender, cmid, type, body, reply_to, sent_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[],
                     $6::text[], $7::bytea[], $8::bigint[], $9::timestamptz[])`

const insertChangeMessages = `
INSERT INTO messages (chat_id, seq, id, sender, cmid, type, body, reply_to, sent_at,
                      change_kind, change_target, change_emoji)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[],
                     $6::text[], $7::bytea[], $8::bigint[], $9::timestamptz[],
                     $10::text[], $11::bigint[], $12::text[])`

// insertDedupe keeps the first message of the batch for each (sender, cmid)
// (DISTINCT ON over the batch order) and replaces an existing record only
// once it has left the window ($7). Messages without a cmid or already
// outside the window get no record. Against a live record the row is left
// alone and not counted, which is how AppendMessages tells a conflict,
// unless it names this very message: the retention purger leaves dedupe
// records behind, and an archive import writing the purged message back
// is no conflict.
const insertDedupe = `
INSERT INTO dedupe (sender, cmid, chat_id, seq, id, sent_at)
SELECT DISTINCT ON (sender, cmid) sender, cmid, chat_id, seq, id, sent_at
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[], $6::timestamptz[])
     WITH ORDINALITY AS b (chat_id, seq, id, sender, cmid, sent_at, n)
WHERE cmid <> '' AND sent_at >= $7
ORDER BY sender, cmid, n
ON CONFLICT (sender, cmid) DO UPDATE
SET chat_id = excluded.chat_id, seq = excluded.seq, id = excluded.id, sent_at = excluded.sent_at
WHERE dedupe.sent_at < $7
   OR (dedupe.chat_id = excluded.chat_id AND dedupe.seq = excluded.seq AND dedupe.id = excluded.id)`

// AppendMessages commits messages and dedupe records in one transaction;
// with PostgreSQL's default synchronous_commit the commit returns once the
// WAL is flushed, so a nil return means the batch survives a crash.
//
// The transaction is also the fence between two nodes that both believe
// they write a chat: a taken (chat, seq) violates the primary key, and a
// (sender, cmid) with a live record elsewhere leaves insertDedupe short of
// one row. Either way the whole batch rolls back with store.ErrConflict.
// A concurrent insert of the same key waits for the other transaction and
// then sees its row, so two racing batches cannot both pass.
func (s *Store) AppendMessages(ctx context.Context, msgs []store.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("postgres: append: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		if err := store.CheckChange(&msgs[i]); err != nil {
			return fmt.Errorf("postgres: append: %w", err)
		}
	}
	c, err := toColumns(msgs)
	if err != nil {
		return fmt.Errorf("postgres: append: %w", err)
	}
	// timestamptz keeps microseconds: truncating here makes the count below
	// and the server's sent_at >= $7 agree on a record at the very edge.
	cutoff := s.now().Add(-store.DedupeWindow).Truncate(time.Microsecond)
	want := recordsWanted(msgs, c.sent, cutoff)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		if c.kinds == nil {
			b.Queue(insertMessages, c.chats, c.seqs, c.ids, c.senders, c.cmids, c.types, c.bodies, c.replies, c.sent)
		} else {
			b.Queue(insertChangeMessages, c.chats, c.seqs, c.ids, c.senders, c.cmids, c.types, c.bodies, c.replies, c.sent,
				c.kinds, c.targets, c.emoji)
		}
		b.Queue(insertDedupe, c.chats, c.seqs, c.ids, c.senders, c.cmids, c.sent, cutoff)
		changes := queueChanges(b, msgs)
		br := tx.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			return errors.Join(err, br.Close())
		}
		tag, err := br.Exec()
		if err != nil {
			return errors.Join(err, br.Close())
		}
		if n := tag.RowsAffected(); n != int64(want) {
			conflict := fmt.Errorf("%w: %d of the batch's %d (sender, cmid) pairs have a live dedupe record",
				store.ErrConflict, int64(want)-n, want)
			return errors.Join(conflict, br.Close())
		}
		for _, i := range changes {
			if err := changeApplied(br, &msgs[i]); err != nil {
				return errors.Join(err, br.Close())
			}
		}
		return br.Close()
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "40P01" { // deadlock_detected
		// Two batches took the same keys in opposite orders: both wrote
		// what another writer also writes, and this one was rolled back.
		return fmt.Errorf("postgres: append: %w: %v", store.ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("postgres: append: %w", mapErr(ctx, err))
	}
	return nil
}

// recordsWanted counts the dedupe rows insertDedupe must write for the batch
// to be free of conflicts: one per distinct (sender, cmid) inside the window.
func recordsWanted(msgs []store.Message, sent []time.Time, cutoff time.Time) int {
	seen := make(map[[2]string]struct{}, len(msgs))
	for i, m := range msgs {
		if m.CMID == "" || sent[i].Before(cutoff) {
			continue
		}
		seen[[2]string{m.From, m.CMID}] = struct{}{}
	}
	return len(seen)
}

// LastSeq is a backward scan of the chat's primary-key range.
func (s *Store) LastSeq(ctx context.Context, chat string) (uint64, error) {
	var last int64
	// A chat emptied by retention keeps counting from its purge marker.
	err := s.pool.QueryRow(ctx, `SELECT COALESCE((SELECT max(seq) FROM messages WHERE chat_id = $1),
		(SELECT purged_through FROM message_purges WHERE chat_id = $1), 0)`, chat).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("postgres: last seq of %q: %w", chat, mapErr(ctx, err))
	}
	return uint64(last), nil
}

// messageSelect reads a page with each message's reactions, aggregated in
// (emoji, user) order by one probe of message_reactions' primary key.
const messageSelect = `SELECT m.seq, m.id, m.sender, m.cmid, m.type, m.body, m.reply_to, m.sent_at,
	m.change_kind, m.change_target, m.change_emoji, m.edited_at, m.deleted_at, r.emoji, r.users
FROM messages m LEFT JOIN LATERAL (
	SELECT array_agg(emoji ORDER BY emoji, user_id) AS emoji, array_agg(user_id ORDER BY emoji, user_id) AS users
	FROM message_reactions r WHERE r.chat_id = m.chat_id AND r.seq = m.seq
) r ON true `

// History reads one page of the primary key: forward from After, or
// backward from Before (or the end) and then reversed.
func (s *Store) History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("postgres: history of %q: limit %d, want > 0", chat, q.Limit)
	}
	upper := int64(math.MaxInt64) // exclusive
	if q.Before > 0 {
		upper = clampSeq(q.Before)
	}
	var (
		rows pgx.Rows
		err  error
	)
	if q.After > 0 {
		if q.After >= math.MaxInt64 {
			return []store.Message{}, ctx.Err()
		}
		rows, err = s.pool.Query(ctx, messageSelect+
			`WHERE m.chat_id = $1 AND m.seq > $2 AND m.seq < $3 ORDER BY m.seq LIMIT $4`, chat, int64(q.After), upper, q.Limit)
	} else {
		rows, err = s.pool.Query(ctx, messageSelect+
			`WHERE m.chat_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3`, chat, upper, q.Limit)
	}
	var out []store.Message
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Message, error) {
			m := store.Message{Chat: chat}
			var (
				seq, id, reply int64
				cmid           []byte
				st             changeState
				emoji, users   []string
			)
			err := row.Scan(&seq, &id, &m.From, &cmid, &m.Type, &m.Body, &reply, &m.SentAt,
				&st.kind, &st.target, &st.emoji, &st.edited, &st.deleted, &emoji, &users)
			m.Seq, m.ID, m.ReplyTo, m.CMID = uint64(seq), uint64(id), uint64(reply), string(cmid)
			st.resolve(&m)
			m.Reactions = reactions(emoji, users)
			return m, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: history of %q: %w", chat, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.Message{}
	}
	if q.After == 0 {
		slices.Reverse(out)
	}
	return out, nil
}

// LookupDedupe ignores records outside the window whether or not the
// sweeper has deleted them yet.
func (s *Store) LookupDedupe(ctx context.Context, sender, cmid string) (store.MessageRef, error) {
	var (
		ref     store.MessageRef
		seq, id int64
	)
	err := s.pool.QueryRow(ctx, `SELECT chat_id, seq, id, sent_at FROM dedupe
		WHERE sender = $1 AND cmid = $2 AND sent_at >= $3`,
		sender, []byte(cmid), s.now().Add(-store.DedupeWindow)).Scan(&ref.Chat, &seq, &id, &ref.SentAt)
	if err != nil {
		return store.MessageRef{}, fmt.Errorf("postgres: lookup dedupe: %w", mapErr(ctx, err))
	}
	ref.Seq, ref.ID = uint64(seq), uint64(id)
	return ref, nil
}

// sweepBatch bounds one DELETE so the sweeper never holds many row locks.
const sweepBatch = 5000

// SweepExpired deletes dedupe records, of chat and of device messages,
// outside the window and returns how many it deleted.
func (s *Store) SweepExpired(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-store.DedupeWindow)
	total := 0
	for _, table := range []string{"dedupe", "device_message_dedupe"} {
		for {
			tag, err := s.pool.Exec(ctx, `DELETE FROM `+table+` WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM `+table+` WHERE sent_at < $1 LIMIT $2))`, cutoff, sweepBatch)
			if err != nil {
				return total, fmt.Errorf("postgres: sweep %s: %w", table, mapErr(ctx, err))
			}
			total += int(tag.RowsAffected())
			if tag.RowsAffected() < sweepBatch {
				break
			}
		}
	}
	return total, nil
}

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
		if n, err := s.SweepExpired(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("dedupe sweep failed", "deleted", n, "err", err)
		} else if n > 0 {
			s.log.Debug("dedupe sweep", "deleted", n)
		}
	}
}
