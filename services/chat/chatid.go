package chat

import (
	"context"
	"strings"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

// DirectChatID is the id of the 1:1 chat between a and b: d:{min}:{max}, the
// same whoever sends first.
func DirectChatID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// DirectMembers parses a 1:1 chat id.
func DirectMembers(chat string) (a, b string, ok bool) {
	rest, found := strings.CutPrefix(chat, "d:")
	if !found {
		return "", "", false
	}
	a, b, found = strings.Cut(rest, ":")
	if !found || a == "" || b == "" || b < a || strings.Contains(b, ":") {
		return "", "", false
	}
	return a, b, true
}

// IsDirectMember reports whether uid is one of the two users of a 1:1 chat.
func IsDirectMember(chat, uid string) bool {
	a, b, ok := DirectMembers(chat)
	return ok && (uid == a || uid == b)
}

// GroupChatID is the chat id of group gid.
func GroupChatID(gid string) string { return "g:" + gid }

// GroupID parses a group chat id.
func GroupID(chat string) (string, bool) {
	gid, ok := strings.CutPrefix(chat, "g:")
	return gid, ok && gid != "" && !strings.Contains(gid, ":")
}

// ValidChatID reports whether chat names real ids: d:{a}:{b} of two user
// ids in order, or g:{gid} of a group id. A chat id a client names is
// checked with it before any store read: any other string is a chat nobody
// is in, and strings no id contains (NUL, invalid UTF-8) would fail a
// PostgreSQL query with an internal error instead of a refusal.
func ValidChatID(chat string) bool {
	if a, b, ok := DirectMembers(chat); ok {
		return ids.ValidUserID(a) && ids.ValidUserID(b)
	}
	gid, ok := GroupID(chat)
	return ok && ids.ValidUserID(gid) // group ids are shaped like user ids
}

// GroupLister lists a group's members.
type GroupLister interface {
	Members(ctx context.Context, groupID string) ([]store.Member, error)
}

// Participants lists who takes part in chat: both users of a 1:1 chat (one
// for a notes-to-self chat), the current members of a group (none for an
// unknown group). ok is false when chat is not a chat id.
func Participants(ctx context.Context, gl GroupLister, chat string) (uids []string, ok bool, err error) {
	if a, b, direct := DirectMembers(chat); direct {
		if a == b {
			return []string{a}, true, nil
		}
		return []string{a, b}, true, nil
	}
	gid, isGroup := GroupID(chat)
	if !isGroup {
		return nil, false, nil
	}
	ms, err := gl.Members(ctx, gid)
	if err != nil {
		return nil, true, err
	}
	uids = make([]string, len(ms))
	for i, m := range ms {
		uids[i] = m.UserID
	}
	return uids, true, nil
}
