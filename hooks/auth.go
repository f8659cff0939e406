// Package hooks plugs chatd into mochi: who may connect, what each client may
// read and write, and what a publish on one of a client's request topics
// (send, groups, sync, receipts, typing) does.
package hooks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Authenticator verifies an access token and returns its user id.
type Authenticator interface {
	Authenticate(ctx context.Context, accessToken string) (string, error)
}

// Relations answers whether two users share a chat (presence visibility).
type Relations interface {
	SharesChat(ctx context.Context, a, b string) (bool, error)
}

// ConnectObserver counts connection outcomes.
type ConnectObserver interface{ ObserveConnect(outcome string) }

// ConnectLimiter admits an authenticated user's connection, or names the
// limit it is over (Limits.AdmitConnect).
type ConnectLimiter interface {
	AdmitConnect(cl *mqtt.Client, uid string) (ConnectRefusal, bool)
}

// ACLObserver counts subscriptions and deliveries the ACL refused.
type ACLObserver interface{ ObserveACLDenied(anonymous bool) }

// AuthOptions configures the Auth hook.
type AuthOptions struct {
	Authenticator  Authenticator
	Relations      Relations
	AllowAnonymous bool
	// KeepAliveMax caps a client's keep-alive in seconds (0 = no cap).
	// Clients asking for more or for none get this value, so a connection
	// that died silently is noticed within 1.5 times it.
	KeepAliveMax uint16
	Server       *mqtt.Server // for CONNACKs with precise codes
	Logger       *slog.Logger
	Metrics      ConnectObserver
	// IsBadCredentials tells token and user failures (0x86) from outages (0x88).
	IsBadCredentials func(error) bool
	// Limits admits connections past authentication; nil = no limits.
	Limits     ConnectLimiter
	ACLMetrics ACLObserver // nil = not counted
	// Sessions, when set, identifies CONNECT tokens (instead of
	// Authenticator) and tracks accepted connections by session, to close
	// them when it is revoked or the token expires.
	Sessions *Sessions
	// Admission, when set, refuses every connection while it returns an
	// error (a cluster node without its membership): CONNACK 0x88.
	Admission func() error
}

// Auth authenticates CONNECTs and answers mochi's ACL checks.
//
// MQTT CONNECT carries username = user id, password = access token and
// client id = {user id}/{device id}. Refusals are sent from OnConnect with the
// precise code for the client's protocol version, because mochi's own path
// only knows "bad username or password" and maps it wrongly for 3.1.1.
type Auth struct {
	mqtt.HookBase
	opts AuthOptions
}

// NewAuth returns the hook.
func NewAuth(opts AuthOptions) *Auth {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Auth{opts: opts}
}

func (h *Auth) ID() string { return "mqchat-auth" }

func (h *Auth) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

type refusal struct {
	v5, v3 packets.Code
	reason string
}

var (
	refuseNotAuthorized = refusal{packets.ErrNotAuthorized, packets.Err3NotAuthorized, "not_authorized"}
	refuseBadCreds      = refusal{packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword, "bad_credentials"}
	refuseClientID      = refusal{packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, "client_id_invalid"}
	refuseUnavailable   = refusal{packets.ErrServerUnavailable, packets.Err3ServerUnavailable, "unavailable"}
)

// OnConnect authenticates the client and refuses it with the right code.
func (h *Auth) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if r, ok := h.check(cl, pk); !ok {
		code := r.v5
		if cl.Properties.ProtocolVersion < 5 {
			code = r.v3
		}
		h.observe(r.reason)
		h.opts.Logger.Debug("mqtt connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", r.reason)
		if err := h.opts.Server.SendConnack(cl, code, false, nil); err != nil {
			return fmt.Errorf("refuse connect: %w", err)
		}
		return r.v5
	}
	if max := h.opts.KeepAliveMax; max > 0 && (cl.State.Keepalive == 0 || cl.State.Keepalive > max) {
		cl.State.Keepalive = max
		cl.State.ServerKeepalive = true // told to v5 clients in CONNACK
	}
	h.observe("accepted")
	return nil
}

func (h *Auth) check(cl *mqtt.Client, pk packets.Packet) (refusal, bool) {
	if h.opts.Admission != nil && h.opts.Admission() != nil {
		return refuseUnavailable, false
	}
	uid := string(pk.Connect.Username)
	if uid == "" {
		if !h.opts.AllowAnonymous || len(pk.Connect.Password) > 0 {
			return refuseNotAuthorized, false
		}
		// Every user's client id has the form {uid}/{device}; an anonymous
		// client with such an id would take over that user's session and
		// receive its queued messages.
		if strings.Contains(cl.ID, "/") {
			return refuseClientID, false
		}
		if pk.Connect.WillFlag && reservedNamespace(pk.Connect.WillTopic) {
			return refuseNotAuthorized, false
		}
		return refusal{}, true
	}
	if _, ok := clientDevice(uid, cl.ID); !ok {
		return refuseClientID, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id, err := h.identify(ctx, string(pk.Connect.Password))
	authUID := id.UserID
	if err != nil {
		if h.opts.IsBadCredentials != nil && !h.opts.IsBadCredentials(err) {
			h.opts.Logger.Error("mqtt connect: authentication backend failed", "client", cl.ID, "error", err)
			return refuseUnavailable, false
		}
		return refuseBadCreds, false
	}
	if authUID != uid {
		return refuseBadCreds, false
	}
	// A will is published by the broker itself, past every ACL check, so its
	// topic is vetted here: only the client's own presence topic.
	if pk.Connect.WillFlag && pk.Connect.WillTopic != PresenceTopic(uid) {
		return refuseNotAuthorized, false
	}
	// Limits come last: only the user itself can spend its own devices'
	// connect rate and connection places, never a stranger using its id.
	if h.opts.Limits != nil {
		if r, ok := h.opts.Limits.AdmitConnect(cl, uid); !ok {
			return refusal{v5: r.V5, v3: r.V3, reason: r.Limit}, false
		}
	}
	if h.opts.Sessions != nil && !h.opts.Sessions.track(cl, id) {
		return refuseBadCreds, false // revoked since it was read
	}
	return refusal{}, true
}

func (h *Auth) identify(ctx context.Context, token string) (Identity, error) {
	if h.opts.Sessions != nil {
		return h.opts.Sessions.opts.Identifier.Identify(ctx, token)
	}
	uid, err := h.opts.Authenticator.Authenticate(ctx, token)
	return Identity{UserID: uid}, err
}

func (h *Auth) observe(outcome string) {
	if h.opts.Metrics != nil {
		h.opts.Metrics.ObserveConnect(outcome)
	}
}

// OnConnectAuthenticate lets through every client OnConnect accepted.
func (h *Auth) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck answers subscriptions and deliveries (write=false) and
// publishes (write=true). Publishes are always let through here and judged in
// the Chat hook instead: mochi disconnects a 3.1.1 client refused here, while
// the Chat hook can refuse with a reason code and an error event and keep the
// connection.
func (h *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) (allowed bool) {
	if write {
		return true
	}
	uid := string(cl.Properties.Username)
	if h.opts.ACLMetrics != nil {
		defer func() {
			if !allowed {
				h.opts.ACLMetrics.ObserveACLDenied(uid == "")
			}
		}()
	}
	if ok, handled := deviceInboxAccess(uid, cl.ID, topic); handled {
		return ok
	}
	allowed, other := readAccess(uid, topic)
	if allowed || other == "" || h.opts.Relations == nil {
		return allowed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, err := h.opts.Relations.SharesChat(ctx, uid, other)
	if err != nil {
		h.opts.Logger.Error("presence acl: relation lookup failed", "client", cl.ID, "error", err)
		return false
	}
	return ok
}
