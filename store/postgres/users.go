package postgres

import (
	"context"
	"fmt"

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
	return s.user(ctx, `SELECT id, username, password_hash, created_at FROM users WHERE id = $1`, id)
}

func (s *Store) UserByUsername(ctx context.Context, username string) (store.User, error) {
	return s.user(ctx, `SELECT id, username, password_hash, created_at FROM users WHERE username = $1`, username)
}

func (s *Store) user(ctx context.Context, query, arg string) (store.User, error) {
	var u store.User
	err := s.pool.QueryRow(ctx, query, arg).Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt)
	if err != nil {
		return store.User{}, fmt.Errorf("postgres: user %q: %w", arg, mapErr(ctx, err))
	}
	return u, nil
}

// nonNil keeps a nil slice from becoming SQL NULL in a NOT NULL column.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
