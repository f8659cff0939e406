package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// UpdateMembers locks the group row FOR UPDATE before reading the members.
// Every other membership write takes at least FOR KEY SHARE on that row,
// and rename and delete take their own row locks, so they all wait for this
// transaction, and a second UpdateMembers reads only after the first
// committed (READ COMMITTED takes a fresh snapshot per statement). This
// holds across nodes sharing the database.
func (s *Store) UpdateMembers(ctx context.Context, groupID string, decide func([]store.Member) (store.MemberChange, error)) error {
	var decided error // decide's own error, kept apart from mapErr
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM groups WHERE id = $1 FOR UPDATE`, groupID).Scan(&one); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT group_id, user_id, role, joined_at FROM group_members
			WHERE group_id = $1 ORDER BY user_id`, groupID)
		if err != nil {
			return err
		}
		current, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Member, error) {
			var m store.Member
			err := row.Scan(&m.GroupID, &m.UserID, &m.Role, &m.JoinedAt)
			return m, err
		})
		if err != nil {
			return err
		}
		if current == nil {
			current = []store.Member{}
		}
		change, err := decide(current)
		if err != nil {
			decided = err
			return err
		}
		for _, m := range change.Put {
			if m.GroupID != "" && m.GroupID != groupID {
				decided = fmt.Errorf("member %q belongs to group %q", m.UserID, m.GroupID)
				return decided
			}
		}
		if err := putMembers(ctx, tx, groupID, change.Put); err != nil {
			return err
		}
		if len(change.Remove) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2)`,
				groupID, change.Remove); err != nil {
				return err
			}
		}
		return nil
	})
	if decided != nil && errors.Is(err, decided) {
		return fmt.Errorf("postgres: update members of %q: %w", groupID, decided)
	}
	if err != nil {
		return fmt.Errorf("postgres: update members of %q: %w", groupID, mapErr(ctx, err))
	}
	return nil
}
