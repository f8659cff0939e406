package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

func (s *Store) PutAttachment(ctx context.Context, a store.Attachment) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO attachments (id, owner, size, sha256, content_type,
			width, height, thumb_width, thumb_height, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		a.ID, a.Owner, a.Size, a.SHA256, a.ContentType, a.Width, a.Height, a.ThumbWidth, a.ThumbHeight, ms(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: put attachment %q: %w", a.ID, mapErr(ctx, err))
	}
	return nil
}

const attachmentColumns = `a.id, a.owner, a.size, a.sha256, a.content_type, a.width, a.height,
	a.thumb_width, a.thumb_height, a.created_at,
	COALESCE((SELECT array_agg(c.chat ORDER BY c.chat) FROM attachment_chats c WHERE c.attachment_id = a.id), '{}')`

func scanAttachment(row pgx.Row) (store.Attachment, error) {
	var a store.Attachment
	err := row.Scan(&a.ID, &a.Owner, &a.Size, &a.SHA256, &a.ContentType, &a.Width, &a.Height,
		&a.ThumbWidth, &a.ThumbHeight, &a.CreatedAt, &a.Chats)
	if len(a.Chats) == 0 {
		a.Chats = nil
	}
	return a, err
}

func (s *Store) Attachment(ctx context.Context, id string) (store.Attachment, error) {
	a, err := scanAttachment(s.pool.QueryRow(ctx, `SELECT `+attachmentColumns+` FROM attachments a WHERE a.id = $1`, id))
	if err != nil {
		return store.Attachment{}, fmt.Errorf("postgres: attachment %q: %w", id, mapErr(ctx, err))
	}
	return a, nil
}

// MarkAttachmentReferenced writes both rows in one statement, so a
// concurrent delete leaves either both or neither.
func (s *Store) MarkAttachmentReferenced(ctx context.Context, id, chat string) error {
	var found bool
	err := s.pool.QueryRow(ctx, `WITH a AS (
			UPDATE attachments SET referenced = true WHERE id = $1 RETURNING id
		), c AS (
			INSERT INTO attachment_chats (attachment_id, chat) SELECT id, $2 FROM a
			ON CONFLICT DO NOTHING
		)
		SELECT EXISTS (SELECT 1 FROM a)`, id, chat).Scan(&found)
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: reference attachment %q: %w", id, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) UnreferencedAttachments(ctx context.Context, before time.Time, limit int) ([]store.Attachment, error) {
	out := []store.Attachment{}
	if limit <= 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+attachmentColumns+` FROM attachments a
		WHERE NOT a.referenced AND a.created_at < $1 ORDER BY a.created_at, a.id LIMIT $2`, ms(before), limit)
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Attachment, error) {
			return scanAttachment(row)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: unreferenced attachments: %w", mapErr(ctx, err))
	}
	if out == nil {
		out = []store.Attachment{}
	}
	return out, nil
}

func (s *Store) DeleteAttachment(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM attachments WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: delete attachment %q: %w", id, mapErr(ctx, err))
	}
	return nil
}

// AddAttachmentUsage adds in one statement whose row lock serialises
// concurrent uploads of the same user; a refused add reads the total after.
func (s *Store) AddAttachmentUsage(ctx context.Context, uid, day string, n, limit int64) (int64, error) {
	var total int64
	var err error
	if n > 0 {
		err = s.pool.QueryRow(ctx, `INSERT INTO attachment_usage AS u (user_id, day, bytes)
			SELECT $1, $2, $3::bigint WHERE $3::bigint <= $4::bigint
			ON CONFLICT (user_id, day) DO UPDATE SET bytes = u.bytes + excluded.bytes
				WHERE u.bytes + excluded.bytes <= $4::bigint
			RETURNING bytes`, uid, day, n, limit).Scan(&total)
		if err == nil {
			return total, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("postgres: attachment usage of %q: %w", uid, mapErr(ctx, err))
		}
	}
	err = s.pool.QueryRow(ctx, `SELECT bytes FROM attachment_usage WHERE user_id = $1 AND day = $2`, uid, day).Scan(&total)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("postgres: attachment usage of %q: %w", uid, mapErr(ctx, err))
	}
	if n > 0 {
		return total, fmt.Errorf("postgres: attachment usage of %q: %w", uid, store.ErrQuotaExceeded)
	}
	return total, nil
}
