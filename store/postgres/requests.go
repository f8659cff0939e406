package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

func (s *Store) PutRequest(ctx context.Context, r store.DirectRequest) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO direct_requests (user_id, chat_id, from_id, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, chat_id) DO NOTHING`,
		r.UserID, r.Chat, r.From, ms(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: put request %q for %q: %w", r.Chat, r.UserID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) DeleteRequest(ctx context.Context, uid, chat string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM direct_requests WHERE user_id = $1 AND chat_id = $2`, uid, chat)
	if err != nil {
		return false, fmt.Errorf("postgres: delete request %q of %q: %w", chat, uid, mapErr(ctx, err))
	}
	return tag.RowsAffected() > 0, nil
}

func (s *Store) RequestsOf(ctx context.Context, uid string) ([]store.DirectRequest, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, chat_id, from_id, created_at
		FROM direct_requests WHERE user_id = $1 ORDER BY chat_id`, uid)
	var out []store.DirectRequest
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DirectRequest, error) {
			var r store.DirectRequest
			err := row.Scan(&r.UserID, &r.Chat, &r.From, &r.CreatedAt)
			return r, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: requests of %q: %w", uid, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.DirectRequest{}
	}
	return out, nil
}
