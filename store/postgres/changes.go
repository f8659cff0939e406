package postgres

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// Each change is one statement, queued after the batch's inserts in the
// same transaction and run in batch order, so a change sees the messages
// and the changes before it. Each locks its target row, applies itself
// unless the target is a tombstone (which stays one), and answers how many
// targets it found and whether the target is a change itself.
const (
	applyEdit = `
WITH t AS (SELECT change_kind <> '' AS is_change, deleted_at IS NOT NULL AS gone
           FROM messages WHERE chat_id = $1 AND seq = $2 FOR UPDATE),
edit AS (UPDATE messages m SET body = $3::bytea, edited_at = $4
         FROM t WHERE m.chat_id = $1 AND m.seq = $2 AND NOT t.is_change AND NOT t.gone),
-- A tombstone keeps no text, not even one sent after it.
late AS (UPDATE messages m SET body = ''::bytea
         FROM t WHERE m.chat_id = $1 AND m.seq = $5 AND t.gone)
SELECT count(*), coalesce(bool_or(is_change), false) FROM t`

	applyDelete = `
WITH t AS (SELECT change_kind <> '' AS is_change, deleted_at IS NOT NULL AS gone
           FROM messages WHERE chat_id = $1 AND seq = $2 FOR UPDATE),
del AS (UPDATE messages m SET body = ''::bytea, edited_at = NULL, deleted_at = $3
        FROM t WHERE m.chat_id = $1 AND m.seq = $2 AND NOT t.is_change AND NOT t.gone),
edits AS (UPDATE messages m SET body = ''::bytea
          FROM t WHERE m.chat_id = $1 AND m.change_kind = 'edit' AND m.change_target = $2
          AND NOT t.is_change AND NOT t.gone),
reactions AS (DELETE FROM message_reactions r USING t
              WHERE r.chat_id = $1 AND r.seq = $2 AND NOT t.is_change)
SELECT count(*), coalesce(bool_or(is_change), false) FROM t`

	applyReact = `
WITH t AS (SELECT change_kind <> '' AS is_change, deleted_at IS NOT NULL AS gone
           FROM messages WHERE chat_id = $1 AND seq = $2 FOR UPDATE),
ins AS (INSERT INTO message_reactions (chat_id, seq, emoji, user_id)
        SELECT $1, $2, $3, $4 FROM t WHERE NOT t.is_change AND NOT t.gone
        ON CONFLICT DO NOTHING)
SELECT count(*), coalesce(bool_or(is_change), false) FROM t`

	applyUnreact = `
WITH t AS (SELECT change_kind <> '' AS is_change, deleted_at IS NOT NULL AS gone
           FROM messages WHERE chat_id = $1 AND seq = $2 FOR UPDATE),
del AS (DELETE FROM message_reactions r USING t
        WHERE r.chat_id = $1 AND r.seq = $2 AND r.emoji = $3 AND r.user_id = $4)
SELECT count(*), coalesce(bool_or(is_change), false) FROM t`
)

// queueChanges queues the statement of every change of msgs (checked by
// store.CheckChange) and returns their indexes in queue order.
func queueChanges(b *pgx.Batch, msgs []store.Message) []int {
	var idx []int
	for i := range msgs {
		m := &msgs[i]
		c := m.Change
		if c == nil {
			continue
		}
		target := int64(c.Target) // below m.Seq, which seqArg bounded
		switch c.Kind {
		case store.ChangeEdit:
			b.Queue(applyEdit, m.Chat, target, nonNil(m.Body), ms(m.SentAt), int64(m.Seq))
		case store.ChangeDelete:
			b.Queue(applyDelete, m.Chat, target, ms(m.SentAt))
		case store.ChangeReact:
			b.Queue(applyReact, m.Chat, target, c.Emoji, m.From)
		case store.ChangeUnreact:
			b.Queue(applyUnreact, m.Chat, target, c.Emoji, m.From)
		}
		idx = append(idx, i)
	}
	return idx
}

// changeApplied reads the answer of m's change statement.
func changeApplied(br pgx.BatchResults, m *store.Message) error {
	var (
		found    int64
		isChange bool
	)
	if err := br.QueryRow().Scan(&found, &isChange); err != nil {
		return err
	}
	switch {
	case found == 0:
		return fmt.Errorf("%w: chat %q seq %d: target %d", store.ErrNotFound, m.Chat, m.Seq, m.Change.Target)
	case isChange:
		return fmt.Errorf("%w: chat %q seq %d: target %d is itself a change", store.ErrInvalidChange, m.Chat, m.Seq, m.Change.Target)
	}
	return nil
}

// changeState is the change columns of a row as read.
type changeState struct {
	kind, emoji     string
	target          int64
	edited, deleted *time.Time
}

// resolve moves the state onto m.
func (st *changeState) resolve(m *store.Message) {
	if st.kind != "" {
		m.Change = &store.Change{Kind: store.ChangeKind(st.kind), Target: uint64(st.target), Emoji: st.emoji}
	}
	if st.edited != nil {
		m.EditedAt = *st.edited
	}
	if st.deleted != nil {
		m.DeletedAt = *st.deleted
	}
}

// reactions groups the (emoji, user) pairs of one message, which come
// ordered by emoji then user.
func reactions(emoji, users []string) []store.Reaction {
	var out []store.Reaction
	for i := range min(len(emoji), len(users)) {
		if n := len(out); n > 0 && out[n-1].Emoji == emoji[i] {
			out[n-1].Users = append(out[n-1].Users, users[i])
			continue
		}
		out = append(out, store.Reaction{Emoji: emoji[i], Users: []string{users[i]}})
	}
	return out
}
