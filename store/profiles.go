package store

import (
	"context"
	"time"
)

// Profile is what a user shows the people they share a chat with, and
// whether others may find them by username.
type Profile struct {
	UserID      string
	DisplayName string
	About       string
	Avatar      string // an opaque reference (URL or media id) clients resolve
	// Discoverable lets other users find this one by exact username.
	Discoverable bool
	UpdatedAt    time.Time
}

// DefaultProfile is the profile of a user who never saved one.
func DefaultProfile(uid string) Profile {
	return Profile{UserID: uid, Discoverable: true}
}

// Profiles is the per-user profile aggregate; it lives with the accounts.
type Profiles interface {
	// PutProfile stores p, replacing the user's previous profile;
	// ErrNotFound when p.UserID is not a user.
	PutProfile(ctx context.Context, p Profile) error
	// Profile returns uid's profile, ErrNotFound when none was ever saved
	// (callers then use DefaultProfile).
	Profile(ctx context.Context, uid string) (Profile, error)
}
