package store

import (
	"context"
	"time"
)

// Purger removes a chat's oldest messages (retention). It is part of
// Messages: every message backend implements it.
type Purger interface {
	// PurgeMessages deletes at most limit (> 0) of chat's oldest messages,
	// in seq order, stopping at the first one whose SentAt is not before
	// before: the stored messages stay a gap-free range ending at the
	// chat's last seq, and nothing sent at or after before is touched.
	// Reactions of the purged messages go with them; dedupe records do not
	// (they expire on their own) and neither do cursors. LastSeq is never
	// lowered, even when every message is purged, so seqs continue. It
	// returns how many were purged and the chat's first seq afterwards.
	PurgeMessages(ctx context.Context, chat string, before time.Time, limit int) (purged int, firstSeq uint64, err error)
	// FirstSeq is the lowest seq of chat still stored: 1 for a chat that
	// never had messages, LastSeq+1 for one whose every message was purged.
	FirstSeq(ctx context.Context, chat string) (uint64, error)
	// FirstSeqs is FirstSeq for several chats in one call (a chat list),
	// keyed by chat; every chat of chats is present.
	FirstSeqs(ctx context.Context, chats []string) (map[string]uint64, error)
}

// ChatLister enumerates the chats that hold (or held) messages, for
// background work over every chat (retention with a server default).
// Backends that cannot list cheaply do not implement it.
type ChatLister interface {
	// ListChats returns up to limit (> 0) chat ids greater than after
	// ("" = from the start), in byte order.
	ListChats(ctx context.Context, after string, limit int) ([]string, error)
}

// RetentionSetting is one retention choice for a chat: the chat-wide one
// of a group (UserID "") or one member's own side of a 1:1 chat.
type RetentionSetting struct {
	Chat   string
	UserID string
	// Period is how long messages are kept; 0 is never stored (setting
	// 0 removes the setting: the server default applies).
	Period    time.Duration
	UpdatedAt time.Time
}

// ChatRetention is the per-chat retention settings aggregate.
type ChatRetention interface {
	// SetRetention stores r, replacing the setting of (r.Chat, r.UserID);
	// a zero Period removes it.
	SetRetention(ctx context.Context, r RetentionSetting) error
	// Retention lists chat's settings ordered by user id ("" first);
	// empty when none.
	Retention(ctx context.Context, chat string) ([]RetentionSetting, error)
	// RetentionChats returns up to limit (> 0) chat ids that have at least
	// one setting, greater than after, in byte order.
	RetentionChats(ctx context.Context, after string, limit int) ([]string, error)
}
