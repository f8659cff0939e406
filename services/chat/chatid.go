package chat

import "strings"

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
