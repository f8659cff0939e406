package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/mqchat/mqchat/store"
)

// CreateUser relies on the primary key and the username's unique
// constraint, so concurrent signups for one name cannot both win.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)`,
		u.ID, u.Username, nonNil(u.PasswordHash), ms(u.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: create user %q: %w", u.Username, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) UserByID(ctx context.Context, id string) (store.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

func (s *Store) UserByUsername(ctx context.Context, username string) (store.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, username)
}

func (s *Store) user(ctx context.Context, query, arg string) (store.User, error) {
	var r userRow
	err := s.pool.QueryRow(ctx, query, arg).Scan(r.dest()...)
	if err != nil {
		return store.User{}, fmt.Errorf("postgres: user %q: %w", arg, mapErr(ctx, err))
	}
	return r.user(), nil
}

// userColumns is what userRow scans, in its order.
const userColumns = `id, username, password_hash, created_at, disabled, deleted_at`

type userRow struct {
	u         store.User
	deletedAt *time.Time
}

func (r *userRow) dest() []any {
	return []any{&r.u.ID, &r.u.Username, &r.u.PasswordHash, &r.u.CreatedAt, &r.u.Disabled, &r.deletedAt}
}

// user returns the row's user; the next scan into r must not share its
// slices.
func (r *userRow) user() store.User {
	u := r.u
	if r.deletedAt != nil {
		u.DeletedAt = *r.deletedAt
	}
	r.u.PasswordHash, r.deletedAt = nil, nil
	return u
}

// nonNil keeps a nil slice from becoming SQL NULL in a NOT NULL column.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
