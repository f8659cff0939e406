package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/mqchat/mqchat/store"
)

// Changes (edits, deletes, reactions) are messages of their own whose
// effect is kept on the target row: its body rewritten or emptied,
// edited_at, deleted_at, edits (the seqs of its edit messages, which a
// delete empties too) and reactions ("{emoji}\x00{user}" elements).
//
// All the statements of one Cassandra batch share a write timestamp, so
// two writes of one cell in it would be settled by comparing values, not
// by their order. A batch's changes are therefore first folded into one
// net state per row they touch (changePlan), read-only, before anything
// is written: a missing target fails the whole AppendMessages with
// store.ErrNotFound while nothing is stored yet. The net state then goes
//
//   - into the INSERT of a row the batch itself writes;
//   - into the conditional batch of the partition being written, when the
//     row lies in it (the common case: a change close to its target), so
//     the change and its effect are applied together or not at all;
//   - otherwise (a target in an earlier bucket) into one logged batch
//     written once the chat's messages are stored. A logged batch is
//     applied whole eventually, but it follows the conditional one: when
//     it fails the change message is stored without its effect, and the
//     append reports the error.
//
// The targets are read at serial consistency, which completes any Paxos
// round left in flight on their partition. Only the chat's single writer
// changes its rows, so what it read still holds when it writes.

// msgRef names one message.
type msgRef struct {
	chat string
	seq  uint64
}

// rowState is the net effect of a batch on one row.
type rowState struct {
	inBatch  bool
	isChange bool
	deleted  bool
	edits    []uint64 // every known edit: stored ones, then the batch's
	newEdits []uint64 // the batch's, to add to a stored row

	setBody, setEdited, setDeleted bool
	body                           []byte
	editedAt, deletedAt            time.Time // zero: null

	clearReactions bool
	reactions      map[string]bool // element -> present after the batch
}

type changePlan struct {
	inBatch map[msgRef]int
	rows    map[msgRef]*rowState
	order   []msgRef // stored rows, in the order they were first touched
}

const (
	selectTarget = `SELECT change_kind, deleted_at, edits FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?`

	insertChanged = `INSERT INTO messages (chat_id, bucket, seq, id, sender, cmid, type, body, reply_to, sent_at,
		change_kind, change_target, change_emoji, edited_at, deleted_at, edits, reactions)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`
)

// planChanges folds the changes of msgs; nil when there are none.
func (s *Store) planChanges(ctx context.Context, msgs []store.Message) (*changePlan, error) {
	if !store.HasChanges(msgs) {
		return nil, nil
	}
	p := &changePlan{inBatch: make(map[msgRef]int, len(msgs)), rows: make(map[msgRef]*rowState)}
	for i := range msgs {
		p.inBatch[msgRef{msgs[i].Chat, msgs[i].Seq}] = i
	}
	for i := range msgs {
		if msgs[i].Change != nil {
			if err := s.planChange(ctx, p, msgs, i); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func (s *Store) planChange(ctx context.Context, p *changePlan, msgs []store.Message, i int) error {
	m := &msgs[i]
	c := m.Change
	if err := store.CheckChange(m); err != nil {
		return err
	}
	if strings.IndexByte(c.Emoji, 0) >= 0 {
		return fmt.Errorf("%w: chat %q seq %d: emoji %q", store.ErrInvalidChange, m.Chat, m.Seq, c.Emoji)
	}
	t, err := s.row(ctx, p, msgs, msgRef{m.Chat, c.Target}, true)
	if err != nil {
		return err
	}
	if t.isChange {
		return fmt.Errorf("%w: chat %q seq %d: target %d is itself a change", store.ErrInvalidChange, m.Chat, m.Seq, c.Target)
	}
	if t.deleted {
		if c.Kind == store.ChangeEdit {
			// A tombstone keeps no text, not even one sent after it.
			self, _ := s.row(ctx, p, msgs, msgRef{m.Chat, m.Seq}, false)
			self.setBody, self.body = true, nil
		}
		return nil
	}
	switch c.Kind {
	case store.ChangeEdit:
		t.setBody, t.body = true, m.Body
		t.setEdited, t.editedAt = true, m.SentAt
		t.edits = append(t.edits, m.Seq)
		t.newEdits = append(t.newEdits, m.Seq)
	case store.ChangeDelete:
		t.deleted = true
		t.setBody, t.body = true, nil
		t.setEdited, t.editedAt = true, time.Time{}
		t.setDeleted, t.deletedAt = true, m.SentAt
		t.clearReactions, t.reactions = true, nil
		for _, seq := range t.edits {
			e, _ := s.row(ctx, p, msgs, msgRef{m.Chat, seq}, false)
			e.setBody, e.body = true, nil
		}
	case store.ChangeReact, store.ChangeUnreact:
		if t.reactions == nil {
			t.reactions = make(map[string]bool)
		}
		t.reactions[c.Emoji+"\x00"+m.From] = c.Kind == store.ChangeReact
	}
	return nil
}

// row returns the state of ref, reading a stored row only when read is
// set (an edit to empty needs no read: it is known to exist).
func (s *Store) row(ctx context.Context, p *changePlan, msgs []store.Message, ref msgRef, read bool) (*rowState, error) {
	if r, ok := p.rows[ref]; ok {
		return r, nil
	}
	r := &rowState{}
	if i, ok := p.inBatch[ref]; ok {
		r.inBatch, r.isChange = true, msgs[i].Change != nil
	} else {
		if read {
			var (
				kind    string
				deleted time.Time
				edits   []int64
			)
			err := s.s.Query(selectTarget, ref.chat, bucketOf(ref.seq), int64(ref.seq)).WithContext(ctx).
				Consistency(gocql.Consistency(gocql.LocalSerial)).Scan(&kind, &deleted, &edits)
			if errors.Is(err, gocql.ErrNotFound) {
				return nil, fmt.Errorf("%w: chat %q seq %d", store.ErrNotFound, ref.chat, ref.seq)
			}
			if err != nil {
				return nil, err
			}
			r.isChange, r.deleted = kind != "", !deleted.IsZero()
			for _, e := range edits {
				r.edits = append(r.edits, uint64(e))
			}
		}
		p.order = append(p.order, ref)
	}
	p.rows[ref] = r
	return r, nil
}

// insert is the INSERT of msgs[i] when the batch has changes: with its
// change and the net state the batch gives it.
func (p *changePlan) insert(m *store.Message, bucket int64) (string, []any) {
	r := p.rows[msgRef{m.Chat, m.Seq}]
	if m.Change == nil && r == nil {
		return insertMessage, []any{m.Chat, bucket, int64(m.Seq), int64(m.ID), m.From, []byte(m.CMID), m.Type,
			nonNil(m.Body), int64(m.ReplyTo), m.SentAt}
	}
	body := m.Body
	var kind, target, emoji, edited, deleted, edits, reactions any = gocql.UnsetValue, gocql.UnsetValue,
		gocql.UnsetValue, gocql.UnsetValue, gocql.UnsetValue, gocql.UnsetValue, gocql.UnsetValue
	if c := m.Change; c != nil {
		kind, target, emoji = string(c.Kind), int64(c.Target), c.Emoji
	}
	if r != nil {
		if r.setBody {
			body = r.body
		}
		if !r.editedAt.IsZero() {
			edited = r.editedAt
		}
		if !r.deletedAt.IsZero() {
			deleted = r.deletedAt
		}
		if len(r.edits) > 0 {
			edits = seqList(r.edits)
		}
		if present := r.present(); len(present) > 0 {
			reactions = present
		}
	}
	return insertChanged, []any{m.Chat, bucket, int64(m.Seq), int64(m.ID), m.From, []byte(m.CMID), m.Type,
		nonNil(body), int64(m.ReplyTo), m.SentAt, kind, target, emoji, edited, deleted, edits, reactions}
}

// present lists the elements present after the batch.
func (r *rowState) present() []string {
	var out []string
	for e, ok := range r.reactions {
		if ok {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// stmt is one statement with its arguments.
type stmt struct {
	bucket int64
	cql    string
	args   []any
}

// updates are the statements that bring the stored rows of chat in bucket
// (all buckets when all is set) to their net state.
func (p *changePlan) updates(chat string, bucket int64, all bool) []stmt {
	var out []stmt
	for _, ref := range p.order {
		if ref.chat != chat || (!all && bucketOf(ref.seq) != bucket) {
			continue
		}
		out = append(out, p.rows[ref].updates(ref)...)
	}
	return out
}

func (r *rowState) updates(ref msgRef) []stmt {
	where := []any{ref.chat, bucketOf(ref.seq), int64(ref.seq)}
	var (
		sets []string
		args []any
	)
	set := func(clause string, v any) { sets = append(sets, clause); args = append(args, v) }
	if r.setBody {
		set("body = ?", nonNil(r.body))
	}
	if r.setEdited {
		set("edited_at = ?", nullTime(r.editedAt))
	}
	if r.setDeleted {
		set("deleted_at = ?", nullTime(r.deletedAt))
	}
	if len(r.newEdits) > 0 && !r.deleted {
		set("edits = edits + ?", seqList(r.newEdits))
	}
	if r.clearReactions {
		set("reactions = ?", nil)
	}
	var out []stmt
	if len(sets) > 0 {
		out = append(out, stmt{where[1].(int64), `UPDATE messages SET ` + strings.Join(sets, ", ") +
			` WHERE chat_id = ? AND bucket = ? AND seq = ?`, append(args, where...)})
	}
	if r.clearReactions {
		return out // a delete drops every reaction of the batch too
	}
	var add, del []string
	for e, ok := range r.reactions {
		if ok {
			add = append(add, e)
		} else {
			del = append(del, e)
		}
	}
	// Two statements: the same column takes one operation per statement.
	if len(add) > 0 {
		out = append(out, stmt{where[1].(int64), `UPDATE messages SET reactions = reactions + ? WHERE chat_id = ? AND bucket = ? AND seq = ?`,
			append([]any{add}, where...)})
	}
	if len(del) > 0 {
		out = append(out, stmt{where[1].(int64), `UPDATE messages SET reactions = reactions - ? WHERE chat_id = ? AND bucket = ? AND seq = ?`,
			append([]any{del}, where...)})
	}
	return out
}

// applyRest writes the updates of chat's stored rows outside the
// partitions the batch wrote, once its messages are stored.
func (s *Store) applyRest(ctx context.Context, p *changePlan, chat string, written map[int64]bool) error {
	var rest []stmt
	for _, st := range p.updates(chat, 0, true) {
		if !written[st.bucket] {
			rest = append(rest, st)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	for _, st := range rest {
		b.Query(st.cql, st.args...)
	}
	if err := s.s.ExecuteBatch(b); err != nil {
		return fmt.Errorf("chat %q: the changes to earlier buckets (their messages are stored): %w", chat, err)
	}
	return nil
}

func seqList(seqs []uint64) []int64 {
	out := make([]int64, len(seqs))
	for i, s := range seqs {
		out[i] = int64(s)
	}
	return out
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// resolve moves what a row holds beyond the message onto m.
func resolve(m *store.Message, kind string, target int64, emoji string, edited, deleted time.Time, reactions []string) {
	if kind != "" {
		m.Change = &store.Change{Kind: store.ChangeKind(kind), Target: uint64(target), Emoji: emoji}
	}
	m.EditedAt, m.DeletedAt = edited, deleted
	for _, e := range reactions {
		emoji, user, ok := strings.Cut(e, "\x00")
		if !ok {
			continue
		}
		if n := len(m.Reactions); n > 0 && m.Reactions[n-1].Emoji == emoji {
			m.Reactions[n-1].Users = append(m.Reactions[n-1].Users, user)
		} else {
			m.Reactions = append(m.Reactions, store.Reaction{Emoji: emoji, Users: []string{user}})
		}
	}
}
