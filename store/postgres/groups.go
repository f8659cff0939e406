package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// memberColumns are the arrays one multi-row member write sends, so a
// 500-member PutMembers is a single statement.
type memberColumns struct {
	users  []string
	roles  []string
	joined []time.Time
}

// columns keeps the last entry of a repeated user id, as a sequence of
// single puts would.
func columns(members []store.Member) memberColumns {
	idx := make(map[string]int, len(members))
	var c memberColumns
	for _, m := range members {
		if i, ok := idx[m.UserID]; ok {
			c.roles[i], c.joined[i] = string(m.Role), ms(m.JoinedAt)
			continue
		}
		idx[m.UserID] = len(c.users)
		c.users = append(c.users, m.UserID)
		c.roles = append(c.roles, string(m.Role))
		c.joined = append(c.joined, ms(m.JoinedAt))
	}
	return c
}

const upsertMembers = `
INSERT INTO group_members (group_id, user_id, role, joined_at)
SELECT $1, u, r, j FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS m (u, r, j)
ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role, joined_at = excluded.joined_at`

func putMembers(ctx context.Context, tx pgx.Tx, groupID string, members []store.Member) error {
	if len(members) == 0 {
		return nil
	}
	c := columns(members)
	_, err := tx.Exec(ctx, upsertMembers, groupID, c.users, c.roles, c.joined)
	return err
}

// CreateGroup inserts the group and its members in one transaction; the
// primary key makes a concurrent create of the same id wait for the first
// and then fail with ErrConflict.
func (s *Store) CreateGroup(ctx context.Context, g store.Group, members []store.Member) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO groups (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)`,
			g.ID, g.Name, g.CreatedBy, ms(g.CreatedAt)); err != nil {
			return err
		}
		return putMembers(ctx, tx, g.ID, members)
	})
	if err != nil {
		return fmt.Errorf("postgres: create group %q: %w", g.ID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) Group(ctx context.Context, id string) (store.Group, error) {
	var g store.Group
	err := s.pool.QueryRow(ctx, `SELECT id, name, created_by, created_at FROM groups WHERE id = $1`, id).
		Scan(&g.ID, &g.Name, &g.CreatedBy, &g.CreatedAt)
	if err != nil {
		return store.Group{}, fmt.Errorf("postgres: group %q: %w", id, mapErr(ctx, err))
	}
	return g, nil
}

func (s *Store) RenameGroup(ctx context.Context, id, name string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE groups SET name = $2 WHERE id = $1`, id, name)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: rename group %q: %w", id, mapErr(ctx, err))
	}
	return nil
}

// DeleteGroup is one statement: the memberships go by ON DELETE CASCADE.
func (s *Store) DeleteGroup(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM groups WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: delete group %q: %w", id, mapErr(ctx, err))
	}
	return nil
}

// PutMembers locks the group row (FOR KEY SHARE) so a concurrent delete
// cannot slip between the existence check and the write.
func (s *Store) PutMembers(ctx context.Context, groupID string, members []store.Member) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM groups WHERE id = $1 FOR KEY SHARE`, groupID).Scan(&one); err != nil {
			return err
		}
		return putMembers(ctx, tx, groupID, members)
	})
	if err != nil {
		return fmt.Errorf("postgres: put members of %q: %w", groupID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) RemoveMembers(ctx context.Context, groupID string, userIDs []string) error {
	if len(userIDs) == 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("postgres: remove members of %q: %w", groupID, err)
		}
		return nil
	}
	// The row lock orders this write with UpdateMembers (FOR UPDATE), whose
	// decisions rest on the members it read; an unknown group has nothing
	// to lock or remove.
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM groups WHERE id = $1 FOR KEY SHARE`, groupID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2)`, groupID, userIDs)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: remove members of %q: %w", groupID, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) Member(ctx context.Context, groupID, uid string) (store.Member, error) {
	m := store.Member{GroupID: groupID, UserID: uid}
	err := s.pool.QueryRow(ctx,
		`SELECT role, joined_at FROM group_members WHERE group_id = $1 AND user_id = $2`, groupID, uid).
		Scan(&m.Role, &m.JoinedAt)
	if err != nil {
		return store.Member{}, fmt.Errorf("postgres: member %q of %q: %w", uid, groupID, mapErr(ctx, err))
	}
	return m, nil
}

func (s *Store) Members(ctx context.Context, groupID string) ([]store.Member, error) {
	out, err := s.members(ctx, `SELECT group_id, user_id, role, joined_at FROM group_members
		WHERE group_id = $1 ORDER BY user_id`, groupID)
	if err != nil {
		return nil, fmt.Errorf("postgres: members of %q: %w", groupID, err)
	}
	return out, nil
}

// GroupsOf reads one page through the (user_id, group_id) index.
func (s *Store) GroupsOf(ctx context.Context, uid, after string, limit int) ([]store.Member, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: groups of %q: limit %d, want > 0", uid, limit)
	}
	out, err := s.members(ctx, `SELECT group_id, user_id, role, joined_at FROM group_members
		WHERE user_id = $1 AND group_id > $2 ORDER BY group_id LIMIT $3`, uid, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: groups of %q: %w", uid, err)
	}
	return out, nil
}

func (s *Store) members(ctx context.Context, query string, args ...any) ([]store.Member, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Member, error) {
		var m store.Member
		err := row.Scan(&m.GroupID, &m.UserID, &m.Role, &m.JoinedAt)
		return m, err
	})
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	if out == nil {
		out = []store.Member{}
	}
	return out, nil
}
