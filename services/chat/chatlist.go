package chat

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqchat/mqchat/store"
)

// ListStore is what the chat list needs beyond the send pipeline.
type ListStore interface {
	ChatStates(ctx context.Context, uid string) ([]store.ChatState, error)
	AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (store.ChatState, bool, error)
	GroupsByID(ctx context.Context, ids []string) (map[string]store.Group, error)
}

// ChatSummary is one entry of a user's chat list.
type ChatSummary struct {
	Chat    string `json:"chat"`
	Kind    string `json:"kind"` // "direct" | "group"
	Title   string `json:"title"`
	LastSeq uint64 `json:"last_seq"`
	// FirstSeq is the oldest seq still stored (retention purges older
	// ones); LastSeq+1 when every message was purged.
	FirstSeq     uint64     `json:"first_seq"`
	LastMessage  *Delivered `json:"last_message"`
	ReadSeq      uint64     `json:"read_seq"`
	DeliveredSeq uint64     `json:"delivered_seq"`
	Unread       uint64     `json:"unread"`
	Left         bool       `json:"left,omitempty"`
	// Request marks a 1:1 chat opened by someone the user shared no chat
	// with, until the user accepts it or replies.
	Request   bool `json:"request,omitempty"`
	changedAt time.Time
}

// ListQuery selects a page of the chat list.
type ListQuery struct {
	// ChangedSince, when set, keeps only chats changed after it (a new
	// message, a cursor moving, joining or leaving); left chats are then
	// included so a device learns it left.
	ChangedSince time.Time
	After        string // the Next of the previous page
	Limit        int
}

// ChatList is one page of a user's chats, newest activity first.
type ChatList struct {
	Chats []ChatSummary `json:"chats"`
	Next  string        `json:"next,omitempty"` // pass as After for the following page
	// SyncCursor is the ChangedSince to use next time. It trails the
	// present a little, so a message committed during this read is
	// reported again rather than missed; clients page history after their
	// last seq, so a chat reported twice costs nothing.
	SyncCursor string `json:"sync_cursor"`
}

const syncMargin = 5 * time.Second

// ChatList returns uid's chats sorted by latest activity.
func (s *Service) ChatList(ctx context.Context, uid string, q ListQuery) (ChatList, error) {
	if q.Limit <= 0 || q.Limit > 200 {
		return ChatList{}, Invalid("limit", "limit must be 1 to 200")
	}
	if s.list == nil {
		return ChatList{}, newError(CodeUnavailable, "chat lists are not enabled", nil)
	}
	started := s.opts.Now()
	states, err := s.list.ChatStates(ctx, uid)
	if err != nil {
		return ChatList{}, s.storeError(ctx, "chat states", err)
	}
	kept := states[:0]
	for _, st := range states {
		if !st.Left || !q.ChangedSince.IsZero() {
			kept = append(kept, st)
		}
	}
	out, err := s.summarize(ctx, uid, kept)
	if err != nil {
		return ChatList{}, err
	}
	if !q.ChangedSince.IsZero() {
		out = slices.DeleteFunc(out, func(sum ChatSummary) bool { return !sum.changedAt.After(q.ChangedSince) })
	}
	slices.SortFunc(out, func(a, b ChatSummary) int {
		if c := b.changedAt.Compare(a.changedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Chat, b.Chat)
	})
	if q.After != "" {
		at, chatID, ok := parseListCursor(q.After)
		if !ok {
			return ChatList{}, Invalid("after", "after is not a cursor from a previous page")
		}
		i := 0
		for i < len(out) && (out[i].changedAt.After(at) || out[i].changedAt.Equal(at) && out[i].Chat <= chatID) {
			i++
		}
		out = out[i:]
	}
	page := ChatList{SyncCursor: strconv.FormatInt(started.Add(-syncMargin).UnixMilli(), 10)}
	if len(out) > q.Limit {
		last := out[q.Limit-1]
		page.Next = strconv.FormatInt(last.changedAt.UnixMilli(), 10) + ":" + last.Chat
		out = out[:q.Limit]
	}
	page.Chats = out
	return page, nil
}

func parseListCursor(s string) (time.Time, string, bool) {
	ms, chatID, ok := strings.Cut(s, ":")
	v, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || chatID == "" {
		return time.Time{}, "", false
	}
	return time.UnixMilli(v), chatID, true
}

// ParseSyncCursor reads a SyncCursor back.
func ParseSyncCursor(s string) (time.Time, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return time.Time{}, Invalid("changed_since", "changed_since is not a sync cursor")
	}
	return time.UnixMilli(v), nil
}

// summarize builds the entries of states with three store reads in all
// (last messages, direct chats' other users, groups), never one per chat:
// a chat list is one screen and must cost the same for 5 chats or 500.
func (s *Service) summarize(ctx context.Context, uid string, states []store.ChatState) ([]ChatSummary, error) {
	chats := make([]string, 0, len(states))
	var userIDs, groupIDs []string
	for _, st := range states {
		chats = append(chats, st.Chat)
		if a, b, ok := DirectMembers(st.Chat); ok {
			userIDs = append(userIDs, otherOf(uid, a, b))
		} else if gid, ok := GroupID(st.Chat); ok {
			groupIDs = append(groupIDs, gid)
		}
	}
	last, err := s.st.LastMessages(ctx, chats)
	if err != nil {
		return nil, s.storeError(ctx, "last messages", err)
	}
	firsts, err := s.st.FirstSeqs(ctx, chats)
	if err != nil {
		return nil, s.storeError(ctx, "first seqs", err)
	}
	users, err := s.st.UsersByID(ctx, userIDs)
	if err != nil {
		return nil, s.storeError(ctx, "chat titles", err)
	}
	groups, err := s.list.GroupsByID(ctx, groupIDs)
	if err != nil {
		return nil, s.storeError(ctx, "chat titles", err)
	}
	out := make([]ChatSummary, 0, len(states))
	for _, st := range states {
		sum := ChatSummary{
			Chat: st.Chat, ReadSeq: st.ReadSeq, DeliveredSeq: st.DeliveredSeq, Left: st.Left,
			changedAt: st.UpdatedAt.Truncate(time.Millisecond),
		}
		sum.FirstSeq = max(firsts[st.Chat], 1)
		if sum.FirstSeq > 1 {
			// A chat emptied by retention has no last message but keeps
			// its last seq.
			sum.LastSeq = sum.FirstSeq - 1
		}
		if m, ok := last[st.Chat]; ok {
			sum.LastSeq = m.Seq
			// Purged messages are not waiting to be read.
			if read := max(sum.ReadSeq, sum.FirstSeq-1); sum.LastSeq > read {
				sum.Unread = sum.LastSeq - read
			}
			visible, err := s.lastVisible(ctx, uid, &sum, m)
			if err != nil {
				return nil, err
			}
			if visible != nil {
				v := View(*visible)
				sum.LastMessage = &v
				if t := visible.SentAt.Truncate(time.Millisecond); t.After(sum.changedAt) {
					sum.changedAt = t
				}
			}
		}
		if a, b, ok := DirectMembers(st.Chat); ok {
			sum.Kind = "direct"
			sum.Title = users[otherOf(uid, a, b)].Username
			if sum.Request, err = s.pendingFor(ctx, uid, st.Chat); err != nil {
				return nil, err
			}
		} else if gid, ok := GroupID(st.Chat); ok {
			sum.Kind = "group"
			sum.Title = groups[gid].Name
		}
		out = append(out, sum)
	}
	return out, nil
}

// otherOf is the member of a direct chat who is not uid (uid itself for a
// chat with oneself).
func otherOf(uid, a, b string) string {
	if a == uid {
		return b
	}
	return a
}

// ReadReceipts takes read cursor moves and tells the chat's members
// (services/receipts). Read must not block.
type ReadReceipts interface {
	Read(uid, chat string, seq uint64)
}

// MarkRead advances uid's read cursor in chat to seq (never backwards,
// never past the last message) and returns the resulting state. The store
// write is done before it returns; the receipt to the chat's members and
// uid's other devices is handed to Options.Receipts, which publishes it
// within its flush interval.
func (s *Service) MarkRead(ctx context.Context, uid, chat string, seq uint64) (store.ChatState, error) {
	if err := s.CanRead(ctx, uid, chat); err != nil {
		return store.ChatState{}, err
	}
	if seq == 0 {
		return store.ChatState{}, Invalid("read_seq", "read_seq must be at least 1")
	}
	if s.list == nil {
		return store.ChatState{}, newError(CodeUnavailable, "read cursors are not enabled", nil)
	}
	last, err := s.st.LastSeq(ctx, chat)
	if err != nil {
		return store.ChatState{}, s.storeError(ctx, "last seq", err)
	}
	seq = min(seq, last)
	if seq == 0 {
		return store.ChatState{}, Invalid("read_seq", "the chat has no messages yet")
	}
	now := s.opts.Now()
	st, changed, err := s.list.AdvanceCursors(ctx, uid, chat, 0, seq, now)
	if errors.Is(err, store.ErrNotFound) {
		// A member whose list lacks the chat (e.g. an entry lost in a crash
		// before its first message) gets it back.
		if err = s.st.JoinChat(ctx, uid, chat, now); err == nil {
			st, changed, err = s.list.AdvanceCursors(ctx, uid, chat, 0, seq, now)
		}
	}
	if err != nil {
		return store.ChatState{}, s.storeError(ctx, "advance read", err)
	}
	if changed && s.opts.Receipts != nil {
		s.opts.Receipts.Read(uid, chat, st.ReadSeq)
	}
	return st, nil
}
