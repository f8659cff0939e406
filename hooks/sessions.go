package hooks

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Identity is who a CONNECT's access token speaks for.
type Identity struct {
	UserID    string
	SessionID string
	ExpiresAt time.Time // of the access token
}

// Identifier verifies an access token and names its session and expiry.
type Identifier interface {
	Identify(ctx context.Context, accessToken string) (Identity, error)
}

// The DISCONNECT reason codes of connections this hook ends. MQTT 3.1.1
// has no reason codes: those clients see the connection close.
var (
	// DisconnectRevoked ends the connections of a session that logged out,
	// was revoked from another device, lost its refresh token to reuse
	// detection, or whose user changed password elsewhere.
	DisconnectRevoked = packets.Code{Code: packets.ErrAdministrativeAction.Code, Reason: "session revoked; log in again"}
	// DisconnectTokenExpired ends a connection when the access token it
	// connected with expires: mochi has no MQTT 5 re-authentication, so a
	// client refreshes its tokens and reconnects.
	DisconnectTokenExpired = packets.Code{Code: packets.ErrMaxConnectTime.Code, Reason: "access token expired; reconnect with a fresh token"}
)

// SessionMetrics counts the connections Sessions closes, by reason
// (session_revoked, token_expired).
type SessionMetrics interface{ ConnectionClosed(reason string) }

// SessionOptions configures the Sessions hook.
type SessionOptions struct {
	Identifier Identifier
	Server     *mqtt.Server
	Logger     *slog.Logger
	Metrics    SessionMetrics // nil = not counted
}

// Sessions knows which session each user connection was opened with. It
// closes a connection when its access token expires (one timer per
// connection) and, through CloseSessions, when its session is revoked.
// Nothing is read from the store after CONNECT.
type Sessions struct {
	mqtt.HookBase
	opts  SessionOptions
	mu    sync.Mutex
	users map[string]map[*mqtt.Client]*sessionConn
	// revoked remembers recently revoked sessions for revokedMemory: a
	// CONNECT that read its session just before the revocation must not
	// be tracked (and live on) just after it.
	revoked map[string]time.Time
}

// revokedMemory is far longer than a CONNECT's authentication takes
// (bounded by its 5 s store timeout).
const revokedMemory = time.Minute

type sessionConn struct {
	sid   string
	timer *time.Timer
}

// NewSessions returns the hook; Auth consults it at CONNECT.
func NewSessions(opts SessionOptions) *Sessions {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sessions{opts: opts, users: make(map[string]map[*mqtt.Client]*sessionConn), revoked: make(map[string]time.Time)}
}

func (h *Sessions) ID() string { return "mqchat-sessions" }

func (h *Sessions) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnDisconnect}, []byte{b})
}

// track registers an accepted connection until it disconnects or its
// token expires; false when its session was revoked meanwhile.
func (h *Sessions) track(cl *mqtt.Client, id Identity) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.revoked[id.SessionID]; ok {
		return false
	}
	conns := h.users[id.UserID]
	if conns == nil {
		conns = make(map[*mqtt.Client]*sessionConn)
		h.users[id.UserID] = conns
	}
	uid := id.UserID
	conns[cl] = &sessionConn{sid: id.SessionID, timer: time.AfterFunc(time.Until(id.ExpiresAt), func() {
		if h.untrack(uid, cl) {
			h.opts.Logger.Debug("closing connection: access token expired", "client", cl.ID)
			h.disconnect(cl, DisconnectTokenExpired, "token_expired")
		}
	})}
	return true
}

// untrack forgets cl and reports whether it was tracked.
func (h *Sessions) untrack(uid string, cl *mqtt.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	conns := h.users[uid]
	c, ok := conns[cl]
	if !ok {
		return false
	}
	c.timer.Stop()
	delete(conns, cl)
	if len(conns) == 0 {
		delete(h.users, uid)
	}
	return true
}

func (h *Sessions) disconnect(cl *mqtt.Client, code packets.Code, reason string) {
	if cl.Closed() {
		return
	}
	if h.opts.Metrics != nil {
		h.opts.Metrics.ConnectionClosed(reason)
	}
	_ = h.opts.Server.DisconnectClient(cl, code)
}

// OnDisconnect forgets the connection and stops its timer.
func (h *Sessions) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.untrack(string(cl.Properties.Username), cl)
}

// CloseSessions disconnects uid's connections opened with a token of one
// of sessionIDs. Connections on other nodes are not reached: they are
// refused at their next CONNECT and closed when their token expires.
func (h *Sessions) CloseSessions(uid string, sessionIDs []string) {
	revoked := make(map[string]bool, len(sessionIDs))
	for _, sid := range sessionIDs {
		revoked[sid] = true
	}
	var victims []*mqtt.Client
	now := time.Now()
	h.mu.Lock()
	for sid, at := range h.revoked {
		if now.Sub(at) > revokedMemory {
			delete(h.revoked, sid)
		}
	}
	for _, sid := range sessionIDs {
		h.revoked[sid] = now
	}
	for cl, c := range h.users[uid] {
		if revoked[c.sid] {
			c.timer.Stop()
			delete(h.users[uid], cl)
			victims = append(victims, cl)
		}
	}
	if len(h.users[uid]) == 0 {
		delete(h.users, uid)
	}
	h.mu.Unlock()
	for _, cl := range victims {
		h.opts.Logger.Debug("closing connection: session revoked", "client", cl.ID)
		h.disconnect(cl, DisconnectRevoked, "session_revoked")
	}
}
