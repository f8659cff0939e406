package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// PutBlock keeps an existing row as it is: the first block's time stands.
func (s *Store) PutBlock(ctx context.Context, b store.Block) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO blocks (user_id, blocked_id, created_at)
		VALUES ($1, $2, $3) ON CONFLICT (user_id, blocked_id) DO NOTHING`,
		b.UserID, b.BlockedID, ms(b.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: put block of %q by %q: %w", b.BlockedID, b.UserID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) DeleteBlock(ctx context.Context, uid, other string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2`, uid, other)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: delete block of %q by %q: %w", other, uid, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) BlocksOf(ctx context.Context, uid string) ([]store.Block, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, blocked_id, created_at
		FROM blocks WHERE user_id = $1 ORDER BY blocked_id`, uid)
	var out []store.Block
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Block, error) {
			var b store.Block
			err := row.Scan(&b.UserID, &b.BlockedID, &b.CreatedAt)
			return b, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: blocks of %q: %w", uid, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.Block{}
	}
	return out, nil
}

func (s *Store) PutPrivacy(ctx context.Context, p store.Privacy) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO privacy (user_id, presence, request_push, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, request_push = excluded.request_push,
			updated_at = excluded.updated_at`,
		p.UserID, p.Presence, p.RequestPush, ms(p.UpdatedAt))
	if err != nil {
		return fmt.Errorf("postgres: put privacy of %q: %w", p.UserID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) Privacy(ctx context.Context, uid string) (store.Privacy, error) {
	p := store.Privacy{UserID: uid}
	err := s.pool.QueryRow(ctx, `SELECT presence, request_push, updated_at FROM privacy WHERE user_id = $1`, uid).
		Scan(&p.Presence, &p.RequestPush, &p.UpdatedAt)
	if err != nil {
		return store.Privacy{}, fmt.Errorf("postgres: privacy of %q: %w", uid, mapErr(ctx, err))
	}
	return p, nil
}
