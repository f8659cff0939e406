package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// The batch reads answer a whole screen (a chat list) in one round trip
// each, however many rows it shows.

func (s *Store) UsersByID(ctx context.Context, ids []string) (map[string]store.User, error) {
	out := make(map[string]store.User, len(ids))
	var r userRow
	rows, err := s.pool.Query(ctx,
		`SELECT `+userColumns+` FROM users WHERE id = ANY($1::text[])`, ids)
	if err == nil {
		_, err = pgx.ForEachRow(rows, r.dest(), func() error {
			u := r.user()
			out[u.ID] = u
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: users by id: %w", mapErr(ctx, err))
	}
	return out, nil
}

func (s *Store) GroupsByID(ctx context.Context, ids []string) (map[string]store.Group, error) {
	out := make(map[string]store.Group, len(ids))
	var g store.Group
	rows, err := s.pool.Query(ctx,
		`SELECT id, name, created_by, created_at FROM groups WHERE id = ANY($1::text[])`, ids)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&g.ID, &g.Name, &g.CreatedBy, &g.CreatedAt}, func() error {
			out[g.ID] = g
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: groups by id: %w", mapErr(ctx, err))
	}
	return out, nil
}

// LastMessages probes the primary key once per chat (a LATERAL LIMIT 1),
// never scanning a chat's history, all in one statement.
func (s *Store) LastMessages(ctx context.Context, chats []string) (map[string]store.Message, error) {
	out := make(map[string]store.Message, len(chats))
	var (
		m                store.Message
		seq, id, replyTo int64
		cmid             []byte
		st               changeState
	)
	rows, err := s.pool.Query(ctx, `
SELECT c.chat_id, m.seq, m.id, m.sender, m.cmid, m.type, m.body, m.reply_to, m.sent_at,
	m.change_kind, m.change_target, m.change_emoji, m.edited_at, m.deleted_at
FROM (SELECT DISTINCT unnest($1::text[]) COLLATE "C" AS chat_id) AS c
CROSS JOIN LATERAL (
	SELECT seq, id, sender, cmid, type, body, reply_to, sent_at,
		change_kind, change_target, change_emoji, edited_at, deleted_at FROM messages
	WHERE messages.chat_id = c.chat_id ORDER BY seq DESC LIMIT 1
) AS m`, chats)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&m.Chat, &seq, &id, &m.From, &cmid, &m.Type, &m.Body, &replyTo, &m.SentAt,
			&st.kind, &st.target, &st.emoji, &st.edited, &st.deleted}, func() error {
			m.Seq, m.ID, m.ReplyTo, m.CMID = uint64(seq), uint64(id), uint64(replyTo), string(cmid)
			st.resolve(&m)
			out[m.Chat] = m
			// The next row must not share the slice or the state.
			m, st = store.Message{}, changeState{}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: last messages: %w", mapErr(ctx, err))
	}
	return out, nil
}

func (s *Store) MembersOfGroups(ctx context.Context, groupIDs []string) (map[string][]store.Member, error) {
	all, err := s.members(ctx, `SELECT group_id, user_id, role, joined_at FROM group_members
		WHERE group_id = ANY($1::text[]) ORDER BY group_id, user_id`, groupIDs)
	if err != nil {
		return nil, fmt.Errorf("postgres: members of groups: %w", err)
	}
	out := make(map[string][]store.Member, len(groupIDs))
	for _, m := range all {
		out[m.GroupID] = append(out[m.GroupID], m)
	}
	return out, nil
}
