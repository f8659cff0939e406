package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gocql/gocql"

	"github.com/mqchat/mqchat/store"
)

// Cursor writes are read-modify-write cycles closed by a lightweight
// transaction (IF ... on every column read): a delivered ack from one
// device and a read ack from another can race, and a plain upsert would
// let one undo the other. A cycle that loses the race reads again. LWTs
// cost four round trips; the receipts service coalesces cursor moves per
// flush interval, so there are few of them per user.

// casRetries bounds the cycles of one write under contention.
const casRetries = 64

var errContended = errors.New("cursor entry too contended")

// serialRead reads what the last committed LWT wrote, even one whose
// commit reached only some replicas so far: the protocol's LOCAL_SERIAL
// read consistency shares its code with the serial consistency.
const serialRead = gocql.Consistency(gocql.LocalSerial)

const selectState = `SELECT delivered_seq, read_seq, left_chat, updated_at FROM chat_states
	WHERE user_id = ? AND chat_id = ?`

// update runs one CAS cycle loop: apply changes st (found tells whether the
// entry exists) and reports whether to write.
func (s *Store) update(ctx context.Context, uid, chat string,
	apply func(st *store.ChatState, found bool) (bool, error)) (store.ChatState, bool, error) {
	for range casRetries {
		if err := ctx.Err(); err != nil {
			return store.ChatState{}, false, err
		}
		st, found, err := s.readState(ctx, uid, chat, serialRead)
		if err != nil {
			return store.ChatState{}, false, err
		}
		old := st
		changed, err := apply(&st, found)
		if err != nil || !changed {
			return st, false, err
		}
		var q *gocql.Query
		if found {
			q = s.s.Query(`UPDATE chat_states SET delivered_seq = ?, read_seq = ?, left_chat = ?, updated_at = ?
				WHERE user_id = ? AND chat_id = ?
				IF delivered_seq = ? AND read_seq = ? AND left_chat = ? AND updated_at = ?`,
				int64(st.DeliveredSeq), int64(st.ReadSeq), st.Left, st.UpdatedAt, uid, chat,
				int64(old.DeliveredSeq), int64(old.ReadSeq), old.Left, old.UpdatedAt)
		} else {
			q = s.s.Query(`INSERT INTO chat_states (user_id, chat_id, delivered_seq, read_seq, left_chat, updated_at)
				VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
				uid, chat, int64(st.DeliveredSeq), int64(st.ReadSeq), st.Left, st.UpdatedAt)
		}
		applied, err := q.WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil {
			return store.ChatState{}, false, err
		}
		if applied {
			return st, true, nil
		}
	}
	return store.ChatState{}, false, errContended
}

func (s *Store) readState(ctx context.Context, uid, chat string, c gocql.Consistency) (store.ChatState, bool, error) {
	st := store.ChatState{UserID: uid, Chat: chat}
	var d, r int64
	err := s.s.Query(selectState, uid, chat).WithContext(ctx).Consistency(c).
		Scan(&d, &r, &st.Left, &st.UpdatedAt)
	if err == gocql.ErrNotFound {
		return st, false, nil
	}
	if err != nil {
		return store.ChatState{}, false, err
	}
	st.DeliveredSeq, st.ReadSeq = uint64(d), uint64(r)
	return st, true, nil
}

func (s *Store) JoinChat(ctx context.Context, uid, chat string, at time.Time) error {
	_, _, err := s.update(ctx, uid, chat, func(st *store.ChatState, found bool) (bool, error) {
		return store.JoinState(st, found, at)
	})
	if err != nil {
		return fmt.Errorf("cassandra: join chat %q for %q: %w", chat, uid, ctxErr(ctx, err))
	}
	return nil
}

func (s *Store) LeaveChat(ctx context.Context, uid, chat string, at time.Time) error {
	_, _, err := s.update(ctx, uid, chat, func(st *store.ChatState, found bool) (bool, error) {
		return store.LeaveState(st, found, at)
	})
	if err != nil {
		return fmt.Errorf("cassandra: leave chat %q for %q: %w", chat, uid, ctxErr(ctx, err))
	}
	return nil
}

func (s *Store) AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (store.ChatState, bool, error) {
	if delivered > math.MaxInt64 || read > math.MaxInt64 {
		return store.ChatState{}, false, fmt.Errorf("cassandra: advance cursors of %q for %q: cursor out of range", chat, uid)
	}
	st, changed, err := s.update(ctx, uid, chat, func(st *store.ChatState, found bool) (bool, error) {
		return store.AdvanceState(st, found, delivered, read, at)
	})
	if err != nil {
		return store.ChatState{}, false, fmt.Errorf("cassandra: advance cursors of %q for %q: %w", chat, uid, ctxErr(ctx, err))
	}
	return st, changed, nil
}

// ChatState reads at the configured consistency: LWT commits are written at
// it too, so with LOCAL_QUORUM a completed cursor write is always seen.
func (s *Store) ChatState(ctx context.Context, uid, chat string) (store.ChatState, error) {
	st, found, err := s.readState(ctx, uid, chat, s.cons)
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.ChatState{}, fmt.Errorf("cassandra: chat state %q for %q: %w", chat, uid, ctxErr(ctx, err))
	}
	return st, nil
}

// ChatStates reads uid's partition, clustered by chat id, in driver pages.
func (s *Store) ChatStates(ctx context.Context, uid string) ([]store.ChatState, error) {
	iter := s.s.Query(`SELECT chat_id, delivered_seq, read_seq, left_chat, updated_at FROM chat_states
		WHERE user_id = ?`, uid).WithContext(ctx).PageSize(pageSize).Iter()
	out := []store.ChatState{}
	var (
		st   = store.ChatState{UserID: uid}
		d, r int64
	)
	for iter.Scan(&st.Chat, &d, &r, &st.Left, &st.UpdatedAt) {
		st.DeliveredSeq, st.ReadSeq = uint64(d), uint64(r)
		out = append(out, st)
		st = store.ChatState{UserID: uid}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cassandra: chat states of %q: %w", uid, ctxErr(ctx, err))
	}
	return out, nil
}
