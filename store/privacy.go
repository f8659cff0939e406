package store

import (
	"context"
	"time"
)

// Presence visibility settings: who may see a user's presence.
const (
	// PresenceContacts: users who share a chat with the user (the default).
	PresenceContacts = "contacts"
	// PresenceNobody: no one but the user.
	PresenceNobody = "nobody"
)

// Privacy is one user's privacy settings. A user who never set them has
// none stored and gets the defaults.
type Privacy struct {
	UserID   string
	Presence string // PresenceContacts or PresenceNobody
	// RequestPush lets message requests (1:1 chats opened by someone the
	// user shares no chat with) be pushed; off by default.
	RequestPush bool
	// UpdatedAt is the last change.
	UpdatedAt time.Time
}

// PrivacySettings is the per-user privacy settings aggregate.
type PrivacySettings interface {
	// PutPrivacy stores p, replacing uid's previous settings.
	PutPrivacy(ctx context.Context, p Privacy) error
	// Privacy returns uid's settings, ErrNotFound when never set.
	Privacy(ctx context.Context, uid string) (Privacy, error)
}
