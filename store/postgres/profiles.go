package postgres

import (
	"context"
	"fmt"

	"github.com/mqchat/mqchat/store"
)

// PutProfile inserts only when the user exists (the SELECT yields no row
// otherwise), so an unknown user is told apart without a second query or
// a foreign-key error to decode.
func (s *Store) PutProfile(ctx context.Context, p store.Profile) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO profiles (user_id, display_name, about, avatar, discoverable, updated_at)
		SELECT id, $2, $3, $4, $5, $6 FROM users WHERE id = $1
		ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
			about = EXCLUDED.about, avatar = EXCLUDED.avatar,
			discoverable = EXCLUDED.discoverable, updated_at = EXCLUDED.updated_at`,
		p.UserID, p.DisplayName, p.About, p.Avatar, p.Discoverable, ms(p.UpdatedAt))
	if err != nil {
		return fmt.Errorf("postgres: put profile %q: %w", p.UserID, mapErr(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: put profile %q: %w", p.UserID, store.ErrNotFound)
	}
	return nil
}

func (s *Store) Profile(ctx context.Context, uid string) (store.Profile, error) {
	p := store.Profile{UserID: uid}
	err := s.pool.QueryRow(ctx,
		`SELECT display_name, about, avatar, discoverable, updated_at FROM profiles WHERE user_id = $1`, uid).
		Scan(&p.DisplayName, &p.About, &p.Avatar, &p.Discoverable, &p.UpdatedAt)
	if err != nil {
		return store.Profile{}, fmt.Errorf("postgres: profile %q: %w", uid, mapErr(ctx, err))
	}
	return p, nil
}
