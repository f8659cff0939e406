// Package archive moves a chat's old messages to the blob store and back:
// the Writer appends gzip'd JSON-lines segments plus a per-chat manifest,
// the Reader serves history below a chat's live range from them, and
// Import restores them into a message store.
//
// Layout in the blob store, per chat:
//
//	archive/{chat}/{from_seq}-{to_seq}.jsonl.gz  one JSON object per message, ascending seq
//	archive/{chat}/manifest.json                 the segments, in seq order
//
// The manifest is the source of truth: a segment it does not list (a
// crash between the two writes) is ignored and written again by the next
// pass.
package archive

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

// timeLayout keeps the store's millisecond precision and is what the
// history view shows.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// record is one archived message: what a history view shows, plus every
// field needed to write the message back through AppendMessages. Edited,
// deleted and reactions are the resolved state at archive time; a restore
// recomputes them from the change messages, which are archived too.
type record struct {
	Chat      string          `json:"chat"`
	Seq       uint64          `json:"seq"`
	ID        string          `json:"id"`
	From      string          `json:"from"`
	CMID      string          `json:"cmid"`
	Type      string          `json:"type"`
	Body      json.RawMessage `json:"body,omitempty"`
	ReplyTo   uint64          `json:"reply_to,omitempty"`
	SentAt    string          `json:"sent_at"`
	Change    *changeRecord   `json:"change,omitempty"`
	EditedAt  string          `json:"edited_at,omitempty"`
	DeletedAt string          `json:"deleted_at,omitempty"`
	Reactions []reaction      `json:"reactions,omitempty"`
}

type changeRecord struct {
	Kind   string `json:"kind"`
	Target uint64 `json:"target"`
	Emoji  string `json:"emoji,omitempty"`
}

type reaction struct {
	Emoji string   `json:"emoji"`
	Users []string `json:"users"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", field, err)
	}
	return t.UTC(), nil
}

func toRecord(m store.Message) record {
	r := record{
		Chat: m.Chat, Seq: m.Seq, ID: ids.Format(m.ID), From: m.From, CMID: m.CMID,
		Type: m.Type, Body: json.RawMessage(m.Body), ReplyTo: m.ReplyTo,
		SentAt: formatTime(m.SentAt), EditedAt: formatTime(m.EditedAt), DeletedAt: formatTime(m.DeletedAt),
	}
	if c := m.Change; c != nil {
		r.Change = &changeRecord{Kind: string(c.Kind), Target: c.Target, Emoji: c.Emoji}
	}
	for _, x := range m.Reactions {
		r.Reactions = append(r.Reactions, reaction{Emoji: x.Emoji, Users: x.Users})
	}
	return r
}

func (r record) message() (store.Message, error) {
	id, err := ids.Parse(r.ID)
	if err != nil {
		return store.Message{}, fmt.Errorf("id: %w", err)
	}
	m := store.Message{
		Chat: r.Chat, Seq: r.Seq, ID: id, From: r.From, CMID: r.CMID,
		Type: r.Type, ReplyTo: r.ReplyTo,
	}
	if len(r.Body) > 0 {
		m.Body = []byte(r.Body)
	}
	if m.SentAt, err = parseTime("sent_at", r.SentAt); err != nil {
		return m, err
	}
	if m.EditedAt, err = parseTime("edited_at", r.EditedAt); err != nil {
		return m, err
	}
	if m.DeletedAt, err = parseTime("deleted_at", r.DeletedAt); err != nil {
		return m, err
	}
	if c := r.Change; c != nil {
		m.Change = &store.Change{Kind: store.ChangeKind(c.Kind), Target: c.Target, Emoji: c.Emoji}
	}
	for _, x := range r.Reactions {
		m.Reactions = append(m.Reactions, store.Reaction{Emoji: x.Emoji, Users: x.Users})
	}
	return m, nil
}
