package app

import (
	"time"

	"github.com/mqchat/mqchat/hooks"
)

// sessionEnder ends a disabled or deleted user's sessions. Its tokens need
// nothing: every token check (REST, refresh, CONNECT) reads the account and
// refuses it from the moment the store has the change. What is left is the
// MQTT connections already open. A CONNECT authenticated just before the
// change may register just after the first sweep, so a second sweep follows
// once any such CONNECT has long finished.
//
// This is the one place that revokes everything of one user; finer session
// revocation (one device, logout) can route through it.
type sessionEnder struct {
	conns hooks.UserConnections
	again time.Duration
}

func (e sessionEnder) EndSessions(uid string) {
	e.conns.Close(uid)
	time.AfterFunc(e.again, func() { e.conns.Close(uid) })
}
