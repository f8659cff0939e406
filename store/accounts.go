package store

import (
	"context"
	"time"
)

// Accounts is the lifecycle of accounts beyond creation: the operator's
// list, disabling and deletion. It lives with Users in the relational half.
//
// A deleted account leaves a tombstone: the user record keeps its id and
// username, loses its password hash, and gets DeletedAt. The id keeps
// answering "deleted" to anyone who meets it in history, and the username
// stays reserved, so nobody can register a deleted person's name and be
// taken for them by their former contacts.
type Accounts interface {
	// SetUserDisabled sets or clears uid's Disabled flag; ErrNotFound for an
	// unknown or deleted user.
	SetUserDisabled(ctx context.Context, uid string, disabled bool) error
	// DeleteUser turns uid into a tombstone in one atomic write: password
	// hash erased, Disabled cleared, DeletedAt = at, and every device of
	// uid (with its push token) removed, with the devices' end-to-end keys,
	// one-time prekeys and the device messages waiting for them (messages
	// uid sent to others stay with them). Group memberships are not touched
	// (the groups service removes them, handing ownership over first).
	// ErrNotFound for an unknown or already deleted user.
	DeleteUser(ctx context.Context, uid string, at time.Time) error
	// ListUsers lists users ordered by id, tombstones included, starting
	// after the id `after` ("" = from the start), at most limit (> 0).
	ListUsers(ctx context.Context, after string, limit int) ([]User, error)
}
