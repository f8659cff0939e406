package store

import (
	"context"
	"time"
)

// Session is one login of one user: the family of refresh tokens that
// descend from it. Only the newest refresh token of a family may be
// exchanged; presenting an older one means it was copied, and the whole
// family is revoked by deleting the session.
type Session struct {
	ID     string
	UserID string
	// Label names the client that opened the session (from the login
	// request), shown in session lists.
	Label string
	// RefreshID is the id of the one refresh token that may still be
	// exchanged.
	RefreshID  string
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time
}

// Sessions is the session aggregate. A revoked session is a deleted one:
// nothing about it is needed afterwards, and lists stay short.
type Sessions interface {
	// CreateSession stores s; ErrConflict when a session with s.ID exists.
	CreateSession(ctx context.Context, s Session) error
	// Session returns one session, ErrNotFound when absent.
	Session(ctx context.Context, id string) (Session, error)
	// RotateSession replaces the session's RefreshID with to, and sets
	// LastUsedAt and ExpiresAt, only while RefreshID is still from: of two
	// rotations presenting the same refresh token exactly one succeeds and
	// the other gets ErrConflict. ErrNotFound when the session is gone.
	RotateSession(ctx context.Context, id, from, to string, usedAt, expiresAt time.Time) error
	// DeleteSession removes one session; ErrNotFound when absent.
	DeleteSession(ctx context.Context, id string) error
	// DeleteUserSessions removes every session of uid except keep ("" =
	// none) and returns the ids it removed.
	DeleteUserSessions(ctx context.Context, uid, keep string) ([]string, error)
	// UserSessions lists uid's sessions ordered by id.
	UserSessions(ctx context.Context, uid string) ([]Session, error)
}

// Passwords changes an account's password hash.
type Passwords interface {
	// SetPasswordHash replaces uid's password hash; ErrNotFound for an
	// unknown user.
	SetPasswordHash(ctx context.Context, uid string, hash []byte) error
}
