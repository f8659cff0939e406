package store

import (
	"context"
	"time"
)

// GroupInvite is an invitation of UserID into GroupID by From, pending
// until UserID accepts or declines it.
type GroupInvite struct {
	UserID    string
	GroupID   string
	From      string
	CreatedAt time.Time
}

// GroupInvites is the per-user aggregate of pending group invitations.
type GroupInvites interface {
	// PutInvite records inv; idempotent (an existing invitation is kept as
	// it is).
	PutInvite(ctx context.Context, inv GroupInvite) error
	// DeleteInvite removes uid's invitation into gid and reports whether
	// there was one.
	DeleteInvite(ctx context.Context, uid, gid string) (bool, error)
	// InvitesOf lists uid's pending invitations ordered by group id.
	InvitesOf(ctx context.Context, uid string) ([]GroupInvite, error)
}
