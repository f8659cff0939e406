package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

func (s *Store) PutInvite(ctx context.Context, r store.GroupInvite) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO group_invites (user_id, group_id, from_id, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, group_id) DO NOTHING`,
		r.UserID, r.GroupID, r.From, ms(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: put invite %q for %q: %w", r.GroupID, r.UserID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) DeleteInvite(ctx context.Context, uid, gid string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM group_invites WHERE user_id = $1 AND group_id = $2`, uid, gid)
	if err != nil {
		return false, fmt.Errorf("postgres: delete invite %q of %q: %w", gid, uid, mapErr(ctx, err))
	}
	return tag.RowsAffected() > 0, nil
}

func (s *Store) InvitesOf(ctx context.Context, uid string) ([]store.GroupInvite, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, group_id, from_id, created_at
		FROM group_invites WHERE user_id = $1 ORDER BY group_id`, uid)
	var out []store.GroupInvite
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.GroupInvite, error) {
			var r store.GroupInvite
			err := row.Scan(&r.UserID, &r.GroupID, &r.From, &r.CreatedAt)
			return r, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: invites of %q: %w", uid, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.GroupInvite{}
	}
	return out, nil
}
