package app

import (
	"context"
	"log/slog"
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
}

func (e sessionEnder) EndSessions(uid string) {
	e.revoke(uid)
	time.AfterFunc(e.again, func() { e.revoke(uid) })
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
