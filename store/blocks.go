package store

import (
	"context"
	"time"
)

// Block says that UserID blocked BlockedID at CreatedAt.
type Block struct {
	UserID    string
	BlockedID string
	CreatedAt time.Time
}

// Blocks is the per-user block list aggregate.
type Blocks interface {
	// PutBlock records b; it is idempotent, and an existing block keeps its
	// CreatedAt (what the user blocked since must not move on a retry).
	PutBlock(ctx context.Context, b Block) error
	// DeleteBlock removes uid's block of other; ErrNotFound when there is
	// none.
	DeleteBlock(ctx context.Context, uid, other string) error
	// BlocksOf lists uid's blocks ordered by blocked user id.
	BlocksOf(ctx context.Context, uid string) ([]Block, error)
}
