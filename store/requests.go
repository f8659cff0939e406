package store

import (
	"context"
	"time"
)

// DirectRequest is a 1:1 chat that From opened with UserID while the two
// shared no chat: a message request, pending until UserID accepts it or
// replies.
type DirectRequest struct {
	UserID    string
	Chat      string
	From      string
	CreatedAt time.Time
}

// DirectRequests is the per-user aggregate of pending message requests.
type DirectRequests interface {
	// PutRequest records r; idempotent (an existing request is kept as it
	// is).
	PutRequest(ctx context.Context, r DirectRequest) error
	// DeleteRequest removes uid's request for chat and reports whether
	// there was one.
	DeleteRequest(ctx context.Context, uid, chat string) (bool, error)
	// RequestsOf lists uid's pending requests ordered by chat id.
	RequestsOf(ctx context.Context, uid string) ([]DirectRequest, error)
}
