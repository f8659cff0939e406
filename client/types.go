package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Message is one chat message as the server delivered or stored it. The
// client hands each (Chat, Seq) to the application once, in seq order per
// chat.
type Message struct {
	Chat    string          `json:"chat"`
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	From    string          `json:"from"`
	CMID    string          `json:"cmid,omitempty"`
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
	ReplyTo uint64          `json:"reply_to,omitempty"`
	SentAt  time.Time       `json:"sent_at"`

	// The state of an ordinary message as history pages show it (so as
	// messages fetched after a reconnect have it; a live delivery is the
	// message as sent): when the body was last edited, whether it was
	// deleted (Body is then null), its reactions, and what it replies to.
	EditedAt       *time.Time      `json:"edited_at,omitempty"`
	Deleted        bool            `json:"deleted,omitempty"`
	Reactions      []Reaction      `json:"reactions,omitempty"`
	ReplyToPreview *ReplyToPreview `json:"reply_to_preview,omitempty"`
	// Change is set on a change message (Type edit, delete or reaction):
	// what it did to an earlier message of the chat. Apply it to the copy
	// of that message the application shows.
	Change *Change `json:"change,omitempty"`
}

// ReplyToPreview is the start of the message a reply answers: Excerpt is
// nil when that message was deleted or its body is no string.
type ReplyToPreview struct {
	Seq     uint64  `json:"seq"`
	From    string  `json:"from"`
	Excerpt *string `json:"excerpt"`
	Deleted bool    `json:"deleted,omitempty"`
}

// Text is the body as a string, or "" when it is not a JSON string.
func (m Message) Text() string {
	var s string
	if json.Unmarshal(m.Body, &s) != nil {
		return ""
	}
	return s
}

// Reaction is one emoji on a message, how many reacted with it, and
// whether the reader did (history pages only).
type Reaction struct {
	Emoji string `json:"emoji"`
	Count int    `json:"count"`
	Mine  bool   `json:"mine,omitempty"`
}

// Change is what a change message (type edit, delete or reaction) did to
// the message at Seq of the same chat.
type Change struct {
	Kind  string `json:"kind"` // edit, delete, react, unreact
	Seq   uint64 `json:"seq"`
	Emoji string `json:"emoji,omitempty"`
}

// Sent is the server's acknowledgement of a send: where the message was
// stored. Duplicate is set when the server had already stored this cmid
// (a retry whose earlier attempt went through).
type Sent struct {
	CMID      string
	Chat      string
	Seq       uint64
	ID        string
	Duplicate bool
}

// Event is anything but a chat message that reaches the client: receipts,
// typing notices, presence, group changes, errors not tied to a call, and
// the client's own "connected" and "disconnected". Type says which; the
// fields that kind of event carries are set and Raw holds it whole.
type Event struct {
	Type         string // receipt, receipts, typing, presence, group, error, connected, disconnected, …
	Chat         string
	User         string
	ReadSeq      uint64
	DeliveredSeq uint64
	Status       string // presence: online, offline
	Err          error  // disconnected: why
	Raw          json.RawMessage
}

// Group is a group as the server shows it.
type Group struct {
	ID        string   `json:"group_id"`
	Chat      string   `json:"chat"`
	Name      string   `json:"name"`
	CreatedBy string   `json:"created_by"`
	Members   []Member `json:"members"`
}

// Member is one member of a group.
type Member struct {
	UserID string `json:"user_id"`
	Role   string `json:"role"`
}

// Error is the server refusing a request, with its documented code
// (invalid_payload, not_authorized, not_found, conflict, cmid_reused, …).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// IsCode reports whether err is the server's refusal with code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// retryable codes are refusals that a later attempt with the same cmid or
// request id may pass: the server asks for exactly that.
func retryable(code string) bool {
	switch code {
	case "quota_exceeded", "rate_limited", "unavailable", "internal":
		return true
	}
	return false
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client closed")
