package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// Every cursor write is a single statement whose row lock serialises it
// with concurrent writes of the same entry, and whose GREATEST() merges
// against the row as last committed: cursors and UpdatedAt never move
// backwards however calls race. Commits are synchronous like every other
// write here; the store.Cursors contract would allow them not to be.

const stateColumns = `user_id, chat_id, delivered_seq, read_seq, left_chat, updated_at`

func scanState(row pgx.Row) (store.ChatState, error) {
	var (
		st        store.ChatState
		deliv, rd int64
	)
	if err := row.Scan(&st.UserID, &st.Chat, &deliv, &rd, &st.Left, &st.UpdatedAt); err != nil {
		return store.ChatState{}, err
	}
	st.DeliveredSeq, st.ReadSeq = uint64(deliv), uint64(rd)
	return st, nil
}

func (s *Store) JoinChat(ctx context.Context, uid, chat string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO chat_states (user_id, chat_id, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, chat_id) DO UPDATE
		SET left_chat = false, updated_at = GREATEST(chat_states.updated_at, excluded.updated_at)`,
		uid, chat, ms(at))
	if err != nil {
		return fmt.Errorf("postgres: join chat %q for %q: %w", chat, uid, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) LeaveChat(ctx context.Context, uid, chat string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE chat_states SET left_chat = true, updated_at = GREATEST(updated_at, $3)
		WHERE user_id = $1 AND chat_id = $2`, uid, chat, ms(at))
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: leave chat %q for %q: %w", chat, uid, mapErr(ctx, err))
	}
	return nil
}

// AdvanceCursors updates only when a cursor would rise. When nothing
// changed it reads the entry in a second statement: that one's snapshot is
// taken after any concurrent raise that made the update a no-op, so the
// state returned is never older than what made it a no-op.
func (s *Store) AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (store.ChatState, bool, error) {
	fail := func(err error) (store.ChatState, bool, error) {
		return store.ChatState{}, false, fmt.Errorf("postgres: advance cursors of %q for %q: %w", chat, uid, mapErr(ctx, err))
	}
	d, err := seqArg(delivered)
	if err != nil {
		return fail(err)
	}
	r, err := seqArg(read)
	if err != nil {
		return fail(err)
	}
	st, err := scanState(s.pool.QueryRow(ctx, `
		UPDATE chat_states
		SET delivered_seq = GREATEST(delivered_seq, $3), read_seq = GREATEST(read_seq, $4),
		    updated_at = GREATEST(updated_at, $5)
		WHERE user_id = $1 AND chat_id = $2 AND (delivered_seq < $3 OR read_seq < $4)
		RETURNING `+stateColumns, uid, chat, d, r, ms(at)))
	if err == nil {
		return st, true, nil
	}
	if err != pgx.ErrNoRows {
		return fail(err)
	}
	st, err = s.ChatState(ctx, uid, chat)
	if err != nil {
		return store.ChatState{}, false, err
	}
	return st, false, nil
}

func (s *Store) ChatState(ctx context.Context, uid, chat string) (store.ChatState, error) {
	st, err := scanState(s.pool.QueryRow(ctx,
		`SELECT `+stateColumns+` FROM chat_states WHERE user_id = $1 AND chat_id = $2`, uid, chat))
	if err != nil {
		return store.ChatState{}, fmt.Errorf("postgres: chat state %q for %q: %w", chat, uid, mapErr(ctx, err))
	}
	return st, nil
}

// ChatStates is one primary-key range scan, already in chat order.
func (s *Store) ChatStates(ctx context.Context, uid string) ([]store.ChatState, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+stateColumns+` FROM chat_states WHERE user_id = $1 ORDER BY chat_id`, uid)
	if err == nil {
		var out []store.ChatState
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ChatState, error) { return scanState(row) })
		if err == nil {
			if out == nil {
				out = []store.ChatState{}
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("postgres: chat states of %q: %w", uid, mapErr(ctx, err))
}
