package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

// Envelope is what a client sends, on users/{uid}/send or over REST.
type Envelope struct {
	To      string          `json:"to"`
	CMID    string          `json:"cmid"`
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
	ReplyTo uint64          `json:"reply_to,omitempty"`
	// At most one of these makes the send a change of an earlier message
	// (lifecycle.go) instead of a message of its own.
	Edit    *TargetRef   `json:"edit,omitempty"`
	Delete  *TargetRef   `json:"delete,omitempty"`
	React   *ReactionRef `json:"react,omitempty"`
	Unreact *ReactionRef `json:"unreact,omitempty"`
}

// Delivered is a stored message as clients see it, on users/{uid}/inbox and
// in history pages.
type Delivered struct {
	Chat    string          `json:"chat"`
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	From    string          `json:"from"`
	CMID    string          `json:"cmid,omitempty"`
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
	ReplyTo uint64          `json:"reply_to,omitempty"`
	SentAt  string          `json:"sent_at"`

	// The state of an ordinary message as history and sync read it
	// (lifecycle.go); a live inbox delivery is the message as sent.
	EditedAt       string          `json:"edited_at,omitempty"`
	Deleted        bool            `json:"deleted,omitempty"` // body is null
	Reactions      []ReactionView  `json:"reactions,omitempty"`
	ReplyToPreview *ReplyToPreview `json:"reply_to_preview,omitempty"`
	// Change is set on an edit, delete or reaction message.
	Change *ChangeView `json:"change,omitempty"`
}

// ReactionView is one emoji on a message. Mine is relative to the reader
// of a history page; it is absent from inbox deliveries.
type ReactionView struct {
	Emoji string `json:"emoji"`
	Count int    `json:"count"`
	Mine  *bool  `json:"mine,omitempty"`
}

// ReplyToPreview shows what a reply answers without fetching it: the
// first 100 characters of a string body, null when the body is not a
// string or the message was deleted.
type ReplyToPreview struct {
	Seq     uint64  `json:"seq"`
	From    string  `json:"from"`
	Excerpt *string `json:"excerpt"`
	Deleted bool    `json:"deleted,omitempty"`
}

// ChangeView is what a change message does: kind ("edit", "delete",
// "react", "unreact") to the message at seq.
type ChangeView struct {
	Kind  string `json:"kind"`
	Seq   uint64 `json:"seq"`
	Emoji string `json:"emoji,omitempty"`
}

// SentAtLayout is RFC 3339 with milliseconds, always UTC.
const SentAtLayout = "2006-01-02T15:04:05.000Z07:00"

// View renders a stored message for clients, as its inbox delivery: no
// reaction is anyone's.
func View(m store.Message) Delivered { return ViewFor(m, "") }

// ViewFor renders a stored message for the user reader, whose own
// reactions it marks as mine; reader "" marks none.
func ViewFor(m store.Message, reader string) Delivered {
	body := json.RawMessage(m.Body)
	if len(body) == 0 || !m.DeletedAt.IsZero() {
		body = json.RawMessage("null")
	}
	d := Delivered{
		Chat: m.Chat, Seq: m.Seq, ID: ids.Format(m.ID), From: m.From, CMID: m.CMID,
		Type: m.Type, Body: body, ReplyTo: m.ReplyTo, SentAt: m.SentAt.UTC().Format(SentAtLayout),
		Deleted: !m.DeletedAt.IsZero(),
	}
	if !m.EditedAt.IsZero() && !d.Deleted {
		d.EditedAt = m.EditedAt.UTC().Format(SentAtLayout)
	}
	if c := m.Change; c != nil {
		d.Change = &ChangeView{Kind: string(c.Kind), Seq: c.Target, Emoji: c.Emoji}
	}
	for _, r := range m.Reactions {
		if len(r.Users) == 0 {
			continue
		}
		v := ReactionView{Emoji: r.Emoji, Count: len(r.Users)}
		if reader != "" {
			mine := slices.Contains(r.Users, reader)
			v.Mine = &mine
		}
		d.Reactions = append(d.Reactions, v)
	}
	return d
}

const (
	maxCMID = 64
	maxType = 32
)

// decodeEnvelope parses and validates a raw send payload. Unknown fields are
// refused so that a client typo ("too" for "to") fails loudly instead of
// being silently dropped.
func decodeEnvelope(payload []byte) (Envelope, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return env, newError(CodeInvalid, "payload is not a valid send envelope: "+err.Error(), nil)
	}
	// dec.More is no test here: it reports false before a stray '}' or ']'.
	if len(bytes.TrimSpace(payload[dec.InputOffset():])) != 0 {
		return env, newError(CodeInvalid, "payload has data after the envelope", nil)
	}
	return env, validateEnvelope(&env)
}

// ValidCMID reports whether s is an acceptable client message id: 1 to 64
// printable ASCII characters without spaces.
func ValidCMID(s string) bool {
	if len(s) < 1 || len(s) > maxCMID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func validateEnvelope(env *Envelope) error {
	if !ValidCMID(env.CMID) {
		return newError(CodeInvalid, "cmid must be 1 to 64 printable ASCII characters without spaces", nil)
	}
	c, err := env.change()
	if err != nil {
		return err
	}
	if c != nil {
		if err := validateChange(env, c); err != nil {
			return err
		}
	} else if err := validateMessage(env); err != nil {
		return err
	}
	if env.To == "user:" || env.To == "group:" ||
		!strings.HasPrefix(env.To, "user:") && !strings.HasPrefix(env.To, "group:") {
		return newError(CodeInvalid, `to must be "user:{id}" or "group:{id}"`, nil)
	}
	return nil
}

// validateMessage checks the type and body of an ordinary send.
func validateMessage(env *Envelope) error {
	if env.Type == "" {
		env.Type = "text"
	}
	if len(env.Type) > maxType || strings.ContainsAny(env.Type, " \t\r\n") || !printable(env.Type) {
		return newError(CodeInvalid, "type must be at most 32 characters without spaces or control characters", nil)
	}
	// Folded, so that "System" (or "ſystem") cannot pass for a server
	// message, nor "Edit" for a change, in a client that compares loosely.
	if reservedType(env.Type) {
		return newError(CodeInvalid, fmt.Sprintf("type %q is reserved for the server", env.Type), nil)
	}
	body, err := CheckBody(env.Body)
	if err != nil {
		return err
	}
	env.Body = body
	return nil
}

// CheckBody validates a message body (a JSON value already decoded as
// such) and returns it trimmed: present, not null, UTF-8 and without a
// lone surrogate escape. Device messages hold their bodies to the same
// rule as chat messages.
func CheckBody(raw json.RawMessage) (json.RawMessage, error) {
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || bytes.Equal(body, []byte("null")) {
		return nil, newError(CodeInvalid, "body is required", nil)
	}
	// Recipients decode the body inside their inbox message and history
	// pages: JSON must be UTF-8 (RFC 8259), and one message a strict
	// decoder refuses would make a whole history page unreadable.
	if !utf8.Valid(body) {
		return nil, newError(CodeInvalid, "body must be UTF-8 JSON", nil)
	}
	// An escaped lone surrogate ("\ud800") is valid UTF-8 on the wire but
	// no character: strict decoders refuse it just the same.
	if !pairedSurrogates(body) {
		return nil, newError(CodeInvalid, `body must be Unicode text: a \u escape names half a surrogate pair`, nil)
	}
	return body, nil
}

// printable reports whether s is UTF-8 without control characters. Text
// columns (PostgreSQL) cannot hold NUL or invalid UTF-8, and clients show
// these strings.
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// sentAt truncates to milliseconds, the precision every backend keeps.
func sentAt(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// pairedSurrogates reports whether every \u escape of a high surrogate in
// the JSON text b is followed by one of a low surrogate, and no low one
// stands alone. b is valid JSON, where a backslash only occurs inside
// strings and starts an escape, so no string tracking is needed.
func pairedSurrogates(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(b) || b[i] != 'u' {
			continue
		}
		r, ok := hex4(b, i+1)
		i += 4
		switch {
		case !ok:
			return false
		case r >= 0xDC00 && r <= 0xDFFF:
			return false
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(b, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
