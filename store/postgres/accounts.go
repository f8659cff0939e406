package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

func (s *Store) SetUserDisabled(ctx context.Context, uid string, disabled bool) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE users SET disabled = $2 WHERE id = $1 AND deleted_at IS NULL`, uid, disabled)
	if err != nil {
		return fmt.Errorf("postgres: set user disabled: %w", mapErr(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set user disabled %q: %w", uid, store.ErrNotFound)
	}
	return nil
}

// DeleteUser makes the tombstone and drops what only the user made in one
// transaction.
// The UPDATE's row lock orders it against a concurrent delete or disable.
func (s *Store) DeleteUser(ctx context.Context, uid string, at time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET password_hash = '', disabled = false, deleted_at = $2
			WHERE id = $1 AND deleted_at IS NULL`, uid, ms(at))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		// What only the account owner made goes with it: devices, profile,
		// privacy settings, block list, pending requests and invitations,
		// and its devices' end-to-end keys (their one-time prekeys go by
		// cascade) and mailboxes with the messages waiting in them.
		for _, table := range []string{"devices", "profiles", "privacy", "blocks", "direct_requests", "group_invites",
			"device_keys", "device_mailboxes", "device_messages"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1`, uid); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: delete user %q: %w", uid, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]store.User, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: list users: limit must be positive, got %d", limit)
	}
	out := []store.User{}
	var r userRow
	rows, err := s.pool.Query(ctx,
		`SELECT `+userColumns+` FROM users WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err == nil {
		_, err = pgx.ForEachRow(rows, r.dest(), func() error {
			out = append(out, r.user())
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list users: %w", mapErr(ctx, err))
	}
	return out, nil
}
