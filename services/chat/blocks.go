package chat

import (
	"context"
	"slices"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Blocks answers whether a user blocks another (services/consent).
type Blocks interface {
	// BlockedSince reports whether blocker blocks other and since when.
	BlockedSince(ctx context.Context, blocker, other string) (time.Time, bool, error)
}

// A 1:1 send to someone who blocks the sender is stored and answered as
// any other (seq, PUBACK, 201, the sender's own devices get it), but is
// never delivered, pushed or shown to the blocker: to the sender it looks
// exactly like a recipient who has not come online. Refusing it, or
// storing nothing, would tell the sender they are blocked (an error, or
// their own message missing from their history). The hiding is one rule,
// hiddenFrom, applied to delivery, history and the chat list.

// directRecipients returns who receives from's message to target: both of
// them, or only the sender when target blocks from.
func (s *Service) directRecipients(ctx context.Context, from, target string) ([]string, error) {
	if target == from {
		return []string{target}, nil
	}
	if s.opts.Blocks != nil {
		_, blocked, err := s.opts.Blocks.BlockedSince(ctx, target, from)
		if err != nil {
			return nil, s.storeError(ctx, "blocks", err)
		}
		if blocked {
			return []string{from}, nil
		}
	}
	return []string{target, from}, nil
}

// hiddenFrom returns the filter of chat's messages uid may not see: those
// of a user uid blocks, sent since the block. nil when nothing is hidden
// (every group chat, and 1:1 chats with someone not blocked).
func (s *Service) hiddenFrom(ctx context.Context, uid, chat string) (func(store.Message) bool, error) {
	a, b, ok := DirectMembers(chat)
	if !ok || s.opts.Blocks == nil || a == b {
		return nil, nil
	}
	other := otherOf(uid, a, b)
	since, blocked, err := s.opts.Blocks.BlockedSince(ctx, uid, other)
	if err != nil {
		return nil, s.storeError(ctx, "blocks", err)
	}
	if !blocked {
		return nil, nil
	}
	return func(m store.Message) bool { return m.From == other && !m.SentAt.Before(since) }, nil
}

// hideBlocked drops what uid may not see from a page of chat; the page's
// Next is computed before, so paging goes on past hidden messages.
func (s *Service) hideBlocked(ctx context.Context, uid, chat string, msgs []store.Message) ([]store.Message, error) {
	hidden, err := s.hiddenFrom(ctx, uid, chat)
	if err != nil || hidden == nil {
		return msgs, err
	}
	return slices.DeleteFunc(msgs, hidden), nil
}

// unreadScan bounds the messages read to recount a chat whose newest
// message is hidden from its reader.
const unreadScan = 200

// lastVisible returns the chat list's last message for uid: m, or when m
// is hidden from uid the newest visible one after uid's read cursor (nil
// when none), with sum.Unread recounted over the visible ones. It reads
// the store only for a chat whose newest message is hidden, so a blocked
// user's messages neither raise the blocker's badge nor bump the chat.
func (s *Service) lastVisible(ctx context.Context, uid string, sum *ChatSummary, m store.Message) (*store.Message, error) {
	hidden, err := s.hiddenFrom(ctx, uid, m.Chat)
	if err != nil {
		return nil, err
	}
	if hidden == nil || !hidden(m) {
		return &m, nil
	}
	after := sum.ReadSeq
	if m.Seq > unreadScan && m.Seq-unreadScan > after {
		after = m.Seq - unreadScan // older unread ones still count, unscanned
	}
	msgs, err := s.st.History(ctx, m.Chat, store.HistoryQuery{After: after, Limit: unreadScan})
	if err != nil {
		return nil, s.storeError(ctx, "unread", err)
	}
	var newest *store.Message
	for i := range msgs {
		if msgs[i].Seq > m.Seq {
			break // arrived after the list read; counted next time
		}
		if hidden(msgs[i]) {
			sum.Unread--
		} else {
			newest = &msgs[i]
		}
	}
	return newest, nil
}
