package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/store"
)

// Edits, deletes and reactions are messages of their own in the chat, each
// with its own seq and a store.Change naming its target: offline devices
// then converge through the same inbox, sync and history path as for any
// message. The chat's writer checks a change against its target's state
// and the store applies it in the same write that stores the change
// message, so the two never disagree, on one node or in a cluster (the
// writer is the chat owner's).

// TargetRef names the message an edit or delete applies to.
type TargetRef struct {
	Seq uint64 `json:"seq"`
}

// ReactionRef names a message and the emoji to add or remove.
type ReactionRef struct {
	Seq   uint64 `json:"seq"`
	Emoji string `json:"emoji"`
}

// The types change messages are stored and delivered with.
const (
	TypeEdit     = "edit"
	TypeDelete   = "delete"
	TypeReaction = "reaction" // react and unreact alike
)

// DefaultEditWindow and DefaultReactionsPerMessage apply when Options
// leaves them 0.
const (
	DefaultEditWindow          = 48 * time.Hour
	DefaultReactionsPerMessage = 20
	maxEmojiBytes              = 32
)

// reservedType reports whether a client may not send t as an ordinary
// message's type: a message typed "edit" without a change would look like
// one to clients that switch on type.
func reservedType(t string) bool {
	for _, r := range []string{"system", TypeEdit, TypeDelete, TypeReaction} {
		if strings.EqualFold(t, r) {
			return true
		}
	}
	return false
}

// change returns the change env asks for, nil for an ordinary send. More
// than one is an error.
func (env *Envelope) change() (*store.Change, error) {
	var (
		c     *store.Change
		named []string
	)
	if env.Edit != nil {
		c, named = &store.Change{Kind: store.ChangeEdit, Target: env.Edit.Seq}, append(named, "edit")
	}
	if env.Delete != nil {
		c, named = &store.Change{Kind: store.ChangeDelete, Target: env.Delete.Seq}, append(named, "delete")
	}
	if env.React != nil {
		c, named = &store.Change{Kind: store.ChangeReact, Target: env.React.Seq, Emoji: env.React.Emoji}, append(named, "react")
	}
	if env.Unreact != nil {
		c, named = &store.Change{Kind: store.ChangeUnreact, Target: env.Unreact.Seq, Emoji: env.Unreact.Emoji}, append(named, "unreact")
	}
	if len(named) > 1 {
		return nil, newError(CodeInvalid, strings.Join(named, ", ")+": a send makes at most one change", nil)
	}
	return c, nil
}

// validateChange checks the change part of env, whose cmid and recipient
// are checked as for any send. The type is left empty, as the client must
// send it: messageOf gives the stored message its type.
func validateChange(env *Envelope, c *store.Change) error {
	field := string(c.Kind)
	if c.Target == 0 {
		return newError(CodeInvalid, field+".seq must be the seq of a message of the chat (1 or more)", nil)
	}
	if env.Type != "" {
		return newError(CodeInvalid, "type: a "+field+" takes none, the server types it", nil)
	}
	if env.ReplyTo != 0 {
		return newError(CodeInvalid, "reply_to: a "+field+" replies to nothing", nil)
	}
	switch c.Kind {
	case store.ChangeEdit:
		body, err := CheckBody(env.Body)
		if err != nil {
			return err
		}
		env.Body = body
		return nil
	case store.ChangeReact, store.ChangeUnreact:
		if err := checkEmoji(field+".emoji", c.Emoji); err != nil {
			return err
		}
	}
	// Absent or null: what a client that always sends the field writes.
	if b := bytes.TrimSpace(env.Body); len(b) != 0 && !bytes.Equal(b, []byte("null")) {
		return newError(CodeInvalid, "body: a "+field+" carries none", nil)
	}
	return nil
}

// changeType is the type a change message is stored and delivered with.
func changeType(k store.ChangeKind) string {
	switch k {
	case store.ChangeEdit:
		return TypeEdit
	case store.ChangeDelete:
		return TypeDelete
	default:
		return TypeReaction
	}
}

// checkEmoji accepts 1 to 32 bytes of printable UTF-8 without spaces or
// slashes (an emoji is a REST path segment). Zero-width joiners and tag
// characters are format characters emoji sequences are made of; other
// format characters (bidi overrides) are refused like control characters.
func checkEmoji(field, e string) error {
	bad := len(e) == 0 || len(e) > maxEmojiBytes || !utf8.ValidString(e) || strings.ContainsRune(e, '/')
	for _, r := range e {
		if bad {
			break
		}
		bad = unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError ||
			unicode.Is(unicode.Cf, r) && r != 0x200D && (r < 0xE0020 || r > 0xE007F)
	}
	if bad {
		return newError(CodeInvalid, field+" must be 1 to 32 bytes of printable UTF-8 without spaces or /", nil)
	}
	return nil
}

// Address is the "to" of an envelope uid sends into chat: the other user
// of a 1:1 chat uid belongs to, or the group. ok is false when chat is no
// chat uid could send to (not a chat id, or another pair's 1:1 chat).
func Address(uid, chat string) (to string, ok bool) {
	if !ValidChatID(chat) {
		return "", false
	}
	if a, b, direct := DirectMembers(chat); direct {
		switch uid {
		case a:
			return "user:" + b, true
		case b:
			return "user:" + a, true
		}
		return "", false
	}
	gid, _ := GroupID(chat)
	return "group:" + gid, true
}

// targetKey names a message the batch changes.
type targetKey struct {
	chat string
	seq  uint64
}

// targets is the state of the messages one batch changes: read from the
// store (or from the batch itself, for a message stored together with its
// change) on first use and then kept up to date as the batch's changes
// are accepted, so two changes of one message in one batch see each other.
type targets map[targetKey]*store.Message

// errNoop marks a change that would change nothing.
var errNoop = errors.New("change changes nothing")

// checkChange decides whether m, a change, may be stored: nil to store
// it, errNoop when it would change nothing (it is answered without being
// stored), or a refusal. last is the chat's last seq, p what the batch
// writes so far.
func (w *writer) checkChange(ctx context.Context, m store.Message, last uint64, ts targets, p *pending) error {
	c := m.Change
	field := string(c.Kind) + ".seq"
	if c.Target > last {
		return newError(CodeNotFound, fmt.Sprintf("%s: no message %d in this chat", field, c.Target), nil)
	}
	t, err := w.target(ctx, m.Chat, c.Target, ts, p)
	if err != nil {
		return err
	}
	if t.Change != nil || t.Type == "system" {
		return newError(CodeInvalid, fmt.Sprintf("%s: %d is a %s, not a message one can change", field, c.Target, describe(*t)), nil)
	}
	deleted := !t.DeletedAt.IsZero()
	s := w.s
	switch c.Kind {
	case store.ChangeEdit:
		switch {
		case t.From != m.From:
			return newError(CodeNotAuthorized, "only the sender may edit a message", nil)
		case deleted:
			return newError(CodeConflict, "message deleted", nil)
		case s.opts.EditWindow < 0:
			return newError(CodeConflict, "edit window passed: this server does not allow edits", nil)
		case s.opts.Now().Sub(t.SentAt) > s.opts.EditWindow:
			return newError(CodeConflict, fmt.Sprintf("edit window passed: messages may be edited for %s", s.opts.EditWindow), nil)
		}
		t.Body, t.EditedAt = m.Body, m.SentAt
	case store.ChangeDelete:
		if deleted {
			return errNoop
		}
		if t.From != m.From {
			if err := w.mayModerate(ctx, m.Chat, m.From); err != nil {
				return err
			}
		}
		t.Body, t.DeletedAt, t.Reactions = nil, m.SentAt, nil
	case store.ChangeReact:
		if deleted {
			return newError(CodeConflict, "message deleted", nil)
		}
		i := slices.IndexFunc(t.Reactions, func(r store.Reaction) bool { return r.Emoji == c.Emoji })
		switch {
		case i >= 0 && slices.Contains(t.Reactions[i].Users, m.From):
			return errNoop
		case i < 0 && len(t.Reactions) >= s.opts.ReactionsPerMessage:
			return newError(CodeConflict, fmt.Sprintf("a message carries at most %d different reactions", s.opts.ReactionsPerMessage), nil)
		case i < 0:
			t.Reactions = append(t.Reactions, store.Reaction{Emoji: c.Emoji, Users: []string{m.From}})
		default:
			users := append(slices.Clone(t.Reactions[i].Users), m.From)
			slices.Sort(users)
			t.Reactions[i].Users = users
		}
	case store.ChangeUnreact:
		i := slices.IndexFunc(t.Reactions, func(r store.Reaction) bool { return r.Emoji == c.Emoji })
		if i < 0 || !slices.Contains(t.Reactions[i].Users, m.From) {
			return errNoop
		}
		users := slices.DeleteFunc(slices.Clone(t.Reactions[i].Users), func(u string) bool { return u == m.From })
		if len(users) == 0 {
			t.Reactions = slices.Delete(slices.Clone(t.Reactions), i, i+1)
		} else {
			t.Reactions[i].Users = users
		}
	}
	return nil
}

func describe(m store.Message) string {
	if m.Change != nil {
		return string(m.Change.Kind)
	}
	return m.Type + " message"
}

// mayModerate allows an owner or admin of a group to delete others'
// messages; in a 1:1 chat nobody may.
func (w *writer) mayModerate(ctx context.Context, chat, uid string) error {
	refused := newError(CodeNotAuthorized, "only the sender, or a group owner or admin, may delete a message", nil)
	gid, ok := GroupID(chat)
	if !ok {
		return refused
	}
	mem, err := w.s.st.Member(ctx, gid, uid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refused
	case err != nil:
		return w.s.storeError(ctx, "group member", err)
	case mem.Role != store.RoleOwner && mem.Role != store.RoleAdmin:
		return refused
	}
	return nil
}

// target returns the batch's view of message seq of chat.
func (w *writer) target(ctx context.Context, chat string, seq uint64, ts targets, p *pending) (*store.Message, error) {
	k := targetKey{chat, seq}
	if t, ok := ts[k]; ok {
		return t, nil
	}
	for _, m := range p.writes {
		if m.Chat == chat && m.Seq == seq {
			t := m
			ts[k] = &t
			return &t, nil
		}
	}
	page, err := w.s.st.History(ctx, chat, store.HistoryQuery{Before: seq + 1, Limit: 1})
	if err != nil {
		return nil, w.s.storeError(ctx, "read changed message", err)
	}
	if len(page) != 1 || page[0].Seq != seq {
		return nil, newError(CodeNotFound, fmt.Sprintf("no message %d in this chat", seq), nil)
	}
	t := page[0]
	t.Reactions = cloneReactions(t.Reactions)
	ts[k] = &t
	return &t, nil
}

func cloneReactions(rs []store.Reaction) []store.Reaction {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Users = slices.Clone(out[i].Users)
	}
	return out
}

// noopResult answers a change that changes nothing: nothing is stored,
// and the answer names the target (duplicate, as a retry would be).
func noopResult(m store.Message, t *store.Message) Result {
	m.Seq, m.ID, m.SentAt = t.Seq, t.ID, t.SentAt
	return Result{Message: m, Duplicate: true}
}

// excerptRunes is how much of a replied-to message a preview shows.
const excerptRunes = 100

// addPreviews sets reply_to_preview on the views of the replies among
// msgs. A target on the page costs nothing; one before it costs one
// indexed read per distinct target.
func (s *Service) addPreviews(ctx context.Context, chat string, msgs []store.Message, views []Delivered) error {
	var known map[uint64]*store.Message
	for i, m := range msgs {
		if m.ReplyTo == 0 || m.Change != nil {
			continue
		}
		if known == nil {
			known = make(map[uint64]*store.Message, len(msgs))
			for j := range msgs {
				known[msgs[j].Seq] = &msgs[j]
			}
		}
		t, ok := known[m.ReplyTo]
		if !ok {
			page, err := s.st.History(ctx, chat, store.HistoryQuery{Before: m.ReplyTo + 1, Limit: 1})
			if err != nil {
				return s.storeError(ctx, "read replied message", err)
			}
			if len(page) == 1 && page[0].Seq == m.ReplyTo {
				t = &page[0]
			}
			known[m.ReplyTo] = t
		}
		if t != nil {
			views[i].ReplyToPreview = previewOf(*t)
		}
	}
	return nil
}

func previewOf(t store.Message) *ReplyToPreview {
	p := &ReplyToPreview{Seq: t.Seq, From: t.From, Deleted: !t.DeletedAt.IsZero()}
	var text string
	if !p.Deleted && json.Unmarshal(t.Body, &text) == nil {
		if r := []rune(text); len(r) > excerptRunes {
			text = string(r[:excerptRunes])
		}
		p.Excerpt = &text
	}
	return p
}
