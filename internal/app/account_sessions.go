package app

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// revoker is the one "end everything of this user" of the auth service:
// every session deleted, every MQTT connection of theirs closed.
type revoker interface {
	RevokeAll(ctx context.Context, uid string) error
}

// sessionEnder ends a disabled or deleted user's sessions. Its tokens are
// refused from the moment the store has the change anyway (every token
// check reads the account); revoking deletes the sessions and closes the
// connections already open. A CONNECT authenticated just before the
// change may register just after the first pass, so a second pass follows
// once any such CONNECT has long finished.
type sessionEnder struct {
	auth  revoker
	again time.Duration
	log   *slog.Logger
	// The second passes still waiting end with the node: stop is closed by
	// Shutdown, which waits for them before it closes the store they use.
	stop    <-chan struct{}
	pending *sync.WaitGroup
}

func (e sessionEnder) EndSessions(uid string) {
	e.revoke(uid)
	e.pending.Go(func() {
		t := time.NewTimer(e.again)
		defer t.Stop()
		select {
		case <-t.C:
			e.revoke(uid)
		case <-e.stop: // every connection is closed by the shutdown anyway
		}
	})
}

func (e sessionEnder) revoke(uid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.auth.RevokeAll(ctx, uid); err != nil {
		// The account check still refuses every token; what may be left is
		// session rows the next login prunes.
		e.log.Error("revoke sessions of a disabled or deleted account", "user", uid, "error", err)
	}
}
