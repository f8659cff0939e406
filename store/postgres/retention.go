package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// PurgeMessages reads the chat's head (at most limit+1 rows of the primary
// key) to find the purgeable prefix, then deletes it by seq range and raises
// the purge marker in the same transaction; the head rows are locked, so an
// edit or reaction racing the purge waits and then finds its target gone.
// Reactions go by their foreign key's cascade.
func (s *Store) PurgeMessages(ctx context.Context, chat string, before time.Time, limit int) (int, uint64, error) {
	if limit <= 0 {
		return 0, 0, fmt.Errorf("postgres: purge %q: limit %d, want > 0", chat, limit)
	}
	var (
		n    int
		next uint64
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT seq, sent_at FROM messages WHERE chat_id = $1 ORDER BY seq LIMIT $2 FOR UPDATE`,
			chat, limit+1)
		if err != nil {
			return err
		}
		var lo, hi int64
		n, next = 0, 0
		for rows.Next() {
			var seq int64
			var sentAt time.Time
			if err := rows.Scan(&seq, &sentAt); err != nil {
				rows.Close()
				return err
			}
			if next != 0 {
				continue
			}
			if n == limit || !sentAt.Before(before) {
				next = uint64(seq)
				continue
			}
			if n == 0 {
				lo = seq
			}
			hi = seq
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n == 0 {
			next, err = firstSeq(ctx, tx, chat)
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE chat_id = $1 AND seq BETWEEN $2 AND $3`, chat, lo, hi); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO message_purges (chat_id, purged_through) VALUES ($1, $2)
			ON CONFLICT (chat_id) DO UPDATE SET purged_through = GREATEST(message_purges.purged_through, excluded.purged_through)`,
			chat, hi); err != nil {
			return err
		}
		if next == 0 {
			next = uint64(hi) + 1
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: purge %q: %w", chat, mapErr(ctx, err))
	}
	return n, next, nil
}

// querier is what both the pool and a transaction offer.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func firstSeq(ctx context.Context, q querier, chat string) (uint64, error) {
	var first int64
	err := q.QueryRow(ctx, `SELECT COALESCE(
		(SELECT min(seq) FROM messages WHERE chat_id = $1),
		(SELECT purged_through + 1 FROM message_purges WHERE chat_id = $1),
		1)`, chat).Scan(&first)
	return uint64(first), err
}

func (s *Store) FirstSeq(ctx context.Context, chat string) (uint64, error) {
	first, err := firstSeq(ctx, s.pool, chat)
	if err != nil {
		return 0, fmt.Errorf("postgres: first seq of %q: %w", chat, mapErr(ctx, err))
	}
	return first, nil
}

// ListChats walks the primary key with a recursive skip scan: one index
// probe per chat instead of a scan of every message.
func (s *Store) ListChats(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: list chats: limit %d, want > 0", limit)
	}
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE c(chat_id) AS (
		(SELECT chat_id FROM messages WHERE chat_id > $1 ORDER BY chat_id LIMIT 1)
		UNION ALL
		SELECT (SELECT chat_id FROM messages WHERE chat_id > c.chat_id ORDER BY chat_id LIMIT 1) FROM c WHERE c.chat_id IS NOT NULL
	) SELECT chat_id FROM c WHERE chat_id IS NOT NULL LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list chats: %w", mapErr(ctx, err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: list chats: %w", mapErr(ctx, err))
	}
	return out, nil
}

func (s *Store) SetRetention(ctx context.Context, r store.RetentionSetting) error {
	var err error
	if r.Period <= 0 {
		_, err = s.pool.Exec(ctx, `DELETE FROM chat_retention WHERE chat_id = $1 AND user_id = $2`, r.Chat, r.UserID)
	} else {
		_, err = s.pool.Exec(ctx, `INSERT INTO chat_retention (chat_id, user_id, period_ms, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (chat_id, user_id) DO UPDATE SET period_ms = excluded.period_ms, updated_at = excluded.updated_at`,
			r.Chat, r.UserID, r.Period.Milliseconds(), ms(r.UpdatedAt))
	}
	if err != nil {
		return fmt.Errorf("postgres: set retention of %q: %w", r.Chat, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) Retention(ctx context.Context, chat string) ([]store.RetentionSetting, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, period_ms, updated_at FROM chat_retention WHERE chat_id = $1 ORDER BY user_id`, chat)
	if err != nil {
		return nil, fmt.Errorf("postgres: retention of %q: %w", chat, mapErr(ctx, err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.RetentionSetting, error) {
		r := store.RetentionSetting{Chat: chat}
		var period int64
		err := row.Scan(&r.UserID, &period, &r.UpdatedAt)
		r.Period = time.Duration(period) * time.Millisecond
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: retention of %q: %w", chat, mapErr(ctx, err))
	}
	return out, nil
}

func (s *Store) RetentionChats(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: retention chats: limit %d, want > 0", limit)
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT chat_id FROM chat_retention WHERE chat_id > $1 ORDER BY chat_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: retention chats: %w", mapErr(ctx, err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: retention chats: %w", mapErr(ctx, err))
	}
	return out, nil
}

// FirstSeqs is one query: a primary key probe per chat.
func (s *Store) FirstSeqs(ctx context.Context, chats []string) (map[string]uint64, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.chat_id, COALESCE(
		(SELECT min(seq) FROM messages m WHERE m.chat_id = c.chat_id),
		(SELECT purged_through + 1 FROM message_purges p WHERE p.chat_id = c.chat_id),
		1)
	FROM (SELECT DISTINCT unnest($1::text[]) COLLATE "C" AS chat_id) AS c`, chats)
	if err != nil {
		return nil, fmt.Errorf("postgres: first seqs: %w", mapErr(ctx, err))
	}
	defer rows.Close()
	out := make(map[string]uint64, len(chats))
	for rows.Next() {
		var chat string
		var first int64
		if err := rows.Scan(&chat, &first); err != nil {
			return nil, fmt.Errorf("postgres: first seqs: %w", mapErr(ctx, err))
		}
		out[chat] = uint64(first)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: first seqs: %w", mapErr(ctx, err))
	}
	return out, nil
}
