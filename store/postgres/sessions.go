package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

const sessionColumns = `id, user_id, label, refresh_id, created_at, last_used_at, expires_at`

func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		sess.ID, sess.UserID, sess.Label, sess.RefreshID, ms(sess.CreatedAt), ms(sess.LastUsedAt), ms(sess.ExpiresAt))
	if err != nil {
		return fmt.Errorf("postgres: create session: %w", mapErr(ctx, err))
	}
	return nil
}

func scanSession(row pgx.Row) (store.Session, error) {
	var sess store.Session
	err := row.Scan(&sess.ID, &sess.UserID, &sess.Label, &sess.RefreshID, &sess.CreatedAt, &sess.LastUsedAt, &sess.ExpiresAt)
	return sess, err
}

func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id))
	if err != nil {
		return store.Session{}, fmt.Errorf("postgres: session: %w", mapErr(ctx, err))
	}
	return sess, nil
}

// RotateSession is one conditional UPDATE: the row lock it takes makes a
// concurrent rotation with the same from re-check the condition after this
// one commits, and match nothing.
func (s *Store) RotateSession(ctx context.Context, id, from, to string, usedAt, expiresAt time.Time) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE sessions SET refresh_id = $3, last_used_at = $4, expires_at = $5 WHERE id = $1 AND refresh_id = $2`,
		id, from, to, ms(usedAt), ms(expiresAt))
	if err != nil {
		return fmt.Errorf("postgres: rotate session: %w", mapErr(ctx, err))
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1 FROM sessions WHERE id = $1`, id).Scan(&one); err != nil {
		return fmt.Errorf("postgres: rotate session: %w", mapErr(ctx, err))
	}
	return fmt.Errorf("postgres: rotate session %q: %w", id, store.ErrConflict)
}

func (s *Store) DeleteSession(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("postgres: delete session: %w", mapErr(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete session %q: %w", id, store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeleteUserSessions(ctx context.Context, uid, keep string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id <> $2 RETURNING id`, uid, keep)
	if err != nil {
		return nil, fmt.Errorf("postgres: delete user sessions: %w", mapErr(ctx, err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: delete user sessions: %w", mapErr(ctx, err))
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

func (s *Store) UserSessions(ctx context.Context, uid string) ([]store.Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE user_id = $1 ORDER BY id`, uid)
	if err != nil {
		return nil, fmt.Errorf("postgres: user sessions: %w", mapErr(ctx, err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Session, error) { return scanSession(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: user sessions: %w", mapErr(ctx, err))
	}
	if out == nil {
		out = []store.Session{}
	}
	return out, nil
}

func (s *Store) SetPasswordHash(ctx context.Context, uid string, hash []byte) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, uid, nonNil(hash))
	if err != nil {
		return fmt.Errorf("postgres: set password: %w", mapErr(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set password %q: %w", uid, store.ErrNotFound)
	}
	return nil
}
