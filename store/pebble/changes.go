package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// msgRef names one message.
type msgRef struct {
	chat string
	seq  uint64
}

// record is a message as AppendMessages rewrites it: its resolved state in
// m (EditedAt, DeletedAt, Body) and the seqs of its edits.
type record struct {
	m     store.Message
	edits []uint64
	dirty bool // its value must be (re)written
}

// changeSet applies a batch's changes in seq order. It reads each target
// once, from the batch itself or from the store, and hands the reaction
// writes straight to the pebble batch, whose operations apply in order (a
// reaction set before a delete in the same batch is dropped by the delete's
// range deletion).
type changeSet struct {
	s       *Store
	b       *pebble.Batch
	inBatch map[msgRef]int
	recs    map[msgRef]*record
}

func newChangeSet(s *Store, b *pebble.Batch, msgs []store.Message) *changeSet {
	cs := &changeSet{s: s, b: b, inBatch: make(map[msgRef]int, len(msgs)), recs: make(map[msgRef]*record)}
	for i := range msgs {
		cs.inBatch[msgRef{msgs[i].Chat, msgs[i].Seq}] = i
	}
	return cs
}

// get returns the record of (chat, seq): one of the batch's messages (as
// written so far: the state a sender cannot set is cleared) or a stored
// one; store.ErrNotFound when it is neither.
func (cs *changeSet) get(msgs []store.Message, ref msgRef) (*record, error) {
	if r, ok := cs.recs[ref]; ok {
		return r, nil
	}
	var r *record
	if i, ok := cs.inBatch[ref]; ok {
		r = &record{m: msgs[i], dirty: true}
		r.m.EditedAt, r.m.DeletedAt, r.m.Reactions = time.Time{}, time.Time{}, nil
	} else {
		v, closer, err := cs.s.db.Get(messageKey(nil, ref.chat, ref.seq))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: chat %q seq %d", store.ErrNotFound, ref.chat, ref.seq)
		}
		if err != nil {
			return nil, err
		}
		r = &record{}
		r.edits, err = decodeRecord(v, &r.m)
		err = errors.Join(err, closer.Close())
		if err != nil {
			return nil, fmt.Errorf("chat %q seq %d: %w", ref.chat, ref.seq, err)
		}
		r.m.Chat, r.m.Seq = ref.chat, ref.seq
	}
	cs.recs[ref] = r
	return r, nil
}

// apply applies msgs[i]'s change to its target.
func (cs *changeSet) apply(msgs []store.Message, i int) error {
	m := &msgs[i]
	c := m.Change
	if err := store.CheckChange(m); err != nil {
		return err
	}
	t, err := cs.get(msgs, msgRef{m.Chat, c.Target})
	if err != nil {
		return err
	}
	if t.m.Change != nil {
		return fmt.Errorf("%w: chat %q seq %d: target %d is itself a change", store.ErrInvalidChange, m.Chat, m.Seq, c.Target)
	}
	if t.m.Deleted() {
		if c.Kind == store.ChangeEdit {
			// A tombstone keeps no text, not even one sent after it.
			self, err := cs.get(msgs, msgRef{m.Chat, m.Seq})
			if err != nil {
				return err
			}
			self.m.Body = nil
		}
		return nil
	}
	switch c.Kind {
	case store.ChangeEdit:
		t.m.Body, t.m.EditedAt = m.Body, m.SentAt
		t.edits = append(t.edits, m.Seq)
		t.dirty = true
	case store.ChangeDelete:
		t.m.Body, t.m.EditedAt, t.m.DeletedAt = nil, time.Time{}, m.SentAt
		t.dirty = true
		for _, seq := range t.edits {
			e, err := cs.get(msgs, msgRef{m.Chat, seq})
			if err != nil {
				return fmt.Errorf("edit %d of chat %q seq %d: %w", seq, m.Chat, c.Target, err)
			}
			e.m.Body, e.dirty = nil, true
		}
		return cs.b.DeleteRange(reactionSeqKey(m.Chat, c.Target), reactionSeqKey(m.Chat, c.Target+1), nil)
	case store.ChangeReact, store.ChangeUnreact:
		if err := checkKeyPart(c.Emoji); err != nil {
			return fmt.Errorf("%w: chat %q seq %d: emoji %q", store.ErrInvalidChange, m.Chat, m.Seq, c.Emoji)
		}
		k := reactionKey(m.Chat, c.Target, c.Emoji, m.From)
		if c.Kind == store.ChangeReact {
			return cs.b.Set(k, nil, nil)
		}
		return cs.b.Delete(k, nil)
	}
	return nil
}

// value is what msgs[i] is written as: its record when a change touched it.
func (cs *changeSet) value(buf []byte, m *store.Message) []byte {
	if r, ok := cs.recs[msgRef{m.Chat, m.Seq}]; ok {
		r.dirty = false
		return encodeRecord(buf, &r.m, r.edits)
	}
	return encodeMessage(buf, m)
}

// writeStored writes the stored messages the batch changed (the batch's
// own were written by value).
func (cs *changeSet) writeStored() error {
	var val []byte
	for ref, r := range cs.recs {
		if !r.dirty {
			continue
		}
		val = encodeRecord(val[:0], &r.m, r.edits)
		if err := cs.b.Set(messageKey(nil, ref.chat, ref.seq), val, nil); err != nil {
			return err
		}
	}
	return nil
}

// lockChats takes the change locks of every chat of msgs, in slot order so
// that two batches never wait on each other, and returns their release.
// They make the read of a target and the commit of its new value one step.
func (s *Store) lockChats(msgs []store.Message) func() {
	var slots []int
	for i := range msgs {
		if n := s.changeLocks.slot(msgs[i].Chat); !slices.Contains(slots, n) {
			slots = append(slots, n)
		}
	}
	slices.Sort(slots)
	for _, n := range slots {
		s.changeLocks[n].Lock()
	}
	return func() {
		for _, n := range slots {
			s.changeLocks[n].Unlock()
		}
	}
}

// attachReactions fills the Reactions of page (one chat, ascending seqs)
// from one bounded scan of the chat's reaction keys.
func (s *Store) attachReactions(it *pebble.Iterator, chat string, page []store.Message) error {
	if len(page) == 0 {
		return nil
	}
	lo, hi := page[0].Seq, page[len(page)-1].Seq
	var upper []byte // nil: the iterator's bound, the chat's end
	if hi < ^uint64(0) {
		upper = reactionSeqKey(chat, hi+1)
	}
	j := 0
	for ok := it.SeekGE(reactionSeqKey(chat, lo)); ok && (upper == nil || bytes.Compare(it.Key(), upper) < 0); ok = it.Next() {
		seq, emoji, user, ok := parseReactionKey(it.Key(), chat)
		if !ok {
			return fmt.Errorf("chat %q: bad reaction key: %w", chat, errCorrupt)
		}
		for j < len(page) && page[j].Seq < seq {
			j++
		}
		if j == len(page) {
			break
		}
		m := &page[j]
		if m.Seq != seq || m.Change != nil {
			continue
		}
		// Keys come ordered by emoji, then user: users arrive sorted.
		if n := len(m.Reactions); n > 0 && m.Reactions[n-1].Emoji == emoji {
			m.Reactions[n-1].Users = append(m.Reactions[n-1].Users, user)
		} else {
			m.Reactions = append(m.Reactions, store.Reaction{Emoji: emoji, Users: []string{user}})
		}
	}
	return nil
}
