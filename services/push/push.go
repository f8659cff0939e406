// Package push sends push notifications for chat messages that no device of
// a recipient received: the Tracker decides when (no device connected, or
// none acknowledged the inbox delivery in time), the Service queues one job
// per (user, chat), collapsing newer messages into it, and a worker pool
// hands jobs to a Provider (FCM, or the log provider) with retries.
package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mqchat/mqchat/store"
)

// Notification is one push to one user's devices: the newest message of a
// chat the user has not received, standing for every message collapsed
// into it.
type Notification struct {
	UserID string
	Chat   string
	Seq    uint64
	From   string // sender's user id
	// Unread is the user's unread count in the chat (last seq minus read
	// cursor) when known, else the messages collapsed into this push.
	Unread uint64
	Title  string
	// Body is the notification text: the message text when
	// push.include_body is on and the message is text, "Photo" or "File"
	// (with the caption under include_body) for attachments, else a summary.
	Body string
}

// Data is the payload apps receive with the notification: enough to open
// the chat and sync it.
func (n Notification) Data() map[string]string {
	return map[string]string{
		"chat":   n.Chat,
		"seq":    strconv.FormatUint(n.Seq, 10),
		"from":   n.From,
		"unread": strconv.FormatUint(n.Unread, 10),
	}
}

// Target is one device to push to.
type Target struct {
	DeviceID string
	Platform store.Platform
	Token    string
}

// Kind classifies a failed send to one device.
type Kind int

const (
	// Permanent failures are counted and not retried.
	Permanent Kind = iota
	// Transient failures (provider unavailable, quota, internal error,
	// network) are retried with exponential backoff.
	Transient
	// DeadToken failures mean the token will never work again
	// (unregistered, invalid): the device's token is deleted.
	DeadToken
)

// SendError is a provider's report of one device's failed send.
type SendError struct {
	Kind   Kind
	Reason string // metric label: "unregistered", "unavailable", …
	Err    error
}

func (e *SendError) Error() string { return fmt.Sprintf("push %s: %v", e.Reason, e.Err) }
func (e *SendError) Unwrap() error { return e.Err }

// Provider delivers a notification to devices. Send returns one error per
// target, in order (nil = accepted by the push service); errors should be
// *SendError, anything else counts as permanent.
type Provider interface {
	Send(ctx context.Context, n Notification, targets []Target) []error
}

// LogProvider records each push it would send: the provider without
// credentials, so a developer sees what would happen.
type LogProvider struct{ Logger *slog.Logger }

func (p LogProvider) Send(_ context.Context, n Notification, targets []Target) []error {
	devices := make([]string, len(targets))
	for i, t := range targets {
		devices[i] = t.DeviceID + "(" + string(t.Platform) + ")"
	}
	p.Logger.Info("push (log provider, nothing sent)", "user", n.UserID, "chat", n.Chat, "seq", n.Seq,
		"from", n.From, "unread", n.Unread, "title", n.Title, "body", n.Body, "devices", devices)
	return make([]error, len(targets))
}

// typeE2E is the chat message type of end-to-end encrypted messages: its
// body is ciphertext for the recipients' devices, never notification text.
const typeE2E = "e2e"

// bodyText is a message's text for include_body: its body when that is a
// JSON string (the text type), cut to maxBodyRunes. An e2e message has
// none, whatever its body looks like: a ciphertext must not leave in a
// push (nor a client's plaintext mislabelled e2e: folded, so "E2E" is too).
func bodyText(m store.Message) (string, bool) {
	if strings.EqualFold(m.Type, typeE2E) {
		return "", false
	}
	var s string
	if len(m.Body) == 0 || json.Unmarshal(m.Body, &s) != nil || s == "" {
		return "", false
	}
	return cut(s), true
}

// attachmentLabel names what an image or file message carries; "" for
// other types.
func attachmentLabel(typ string) string {
	switch typ {
	case "image":
		return "Photo"
	case "file":
		return "File"
	}
	return ""
}

// attachmentText is an image or file message's notification text: its
// label, and its caption when bodies may be shown. The body's other
// fields (ids, hashes, the thumbnail) never go out in a push.
func attachmentText(m store.Message, includeBody bool) string {
	label := attachmentLabel(m.Type)
	if !includeBody {
		return label
	}
	var b struct {
		Caption string `json:"caption"`
	}
	if json.Unmarshal(m.Body, &b) != nil || b.Caption == "" {
		return label
	}
	return label + ": " + cut(b.Caption)
}

// cut keeps s within maxBodyRunes.
func cut(s string) string {
	if utf8.RuneCountInString(s) > maxBodyRunes {
		r := []rune(s)
		s = string(r[:maxBodyRunes-1]) + "…"
	}
	return s
}

// maxBodyRunes keeps a push well inside FCM's 4 KB payload limit.
const maxBodyRunes = 200

// classify returns err as a *SendError (a plain error is permanent).
func classify(err error) *SendError {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	return &SendError{Kind: Permanent, Reason: "other", Err: err}
}
