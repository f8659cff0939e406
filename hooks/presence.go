package hooks

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/presence"
)

// PresenceTracker is what the Presence hook reports connections to.
type PresenceTracker interface {
	Connected(uid, clientID string) uint64
	Disconnected(uid, clientID string, gen uint64, cause presence.Cause)
}

// Presence feeds users' connections and disconnections to the presence
// service, which publishes the retained aggregate on presence/{uid}.
//
// A client's will (presence/{uid}, "offline") is never published by mochi:
// the hook clears it when the session is established, because the
// disconnect itself is what the presence service acts on, with a grace
// period and across devices. The will stays useful as a declaration and
// for other brokers; chatd only accepts it on presence/{uid} (Auth hook).
type Presence struct {
	mqtt.HookBase
	tracker PresenceTracker
	// mu orders "is this connection still open?" with its registration: a
	// connection taken over before its OnSessionEstablished ran (mochi has
	// already sent its CONNACK) must not register after its successor.
	mu sync.Mutex
	// gens maps each established *mqtt.Client to its connection generation.
	gens sync.Map
	// arriving maps a client id to the newest connection being set up for it
	// (OnSessionEstablish, before mochi takes the old session over), so the
	// old connection's end is known as a takeover even before mochi marks it.
	arriving sync.Map
	// moving maps a client id to its connection that Moving marked: closed
	// because the client id connected on another node. Keyed by client id,
	// like arriving, so an entry whose OnDisconnect never comes (a mark
	// racing the connection's own end) is bounded and replaced, not piled up.
	moving sync.Map
}

// NewPresence returns the hook.
func NewPresence(tracker PresenceTracker) *Presence {
	return &Presence{tracker: tracker}
}

func (h *Presence) ID() string { return "mqchat-presence" }

func (h *Presence) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect}, []byte{b})
}

// OnSessionEstablish runs before mochi takes over an existing session with
// the same client id.
func (h *Presence) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if uid := string(cl.Properties.Username); uid != "" {
		h.arriving.Store(cl.ID, cl)
	}
}

// Moving marks cl, which the caller is about to close because its client id
// connected on another node, so that its OnDisconnect counts the device out
// (CauseMoved) although it is closed with packets.ErrSessionTakenOver: the
// other node counts the device in, this one must not keep it. Call it
// before the close. A connection already closed is left alone: its end has
// its own cause.
func (h *Presence) Moving(cl *mqtt.Client) {
	if len(cl.Properties.Username) == 0 || cl.Closed() {
		return
	}
	h.moving.Store(cl.ID, cl)
}

// OnSessionEstablished counts the device in and drops its will.
func (h *Presence) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	uid := string(cl.Properties.Username)
	if uid == "" {
		return // anonymous clients have no presence
	}
	h.arriving.CompareAndDelete(cl.ID, cl)
	// mochi publishes no will while the flag is 0 (sendLWT).
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	h.mu.Lock()
	defer h.mu.Unlock()
	// A successor stops this connection (DisconnectClient) before its own
	// OnSessionEstablished, so under mu either this one registers first or
	// it is seen closed here and never registers.
	if cl.Closed() {
		return
	}
	h.gens.Store(cl, h.tracker.Connected(uid, cl.ID))
}

// OnDisconnect reports the end of an established connection with its cause.
// A connection that never registered reports generation 0, which matches
// no device and only counts in the metrics.
func (h *Presence) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	uid := string(cl.Properties.Username)
	if uid == "" {
		return
	}
	var gen uint64
	if v, ok := h.gens.LoadAndDelete(cl); ok {
		gen = v.(uint64)
	}
	h.tracker.Disconnected(uid, cl.ID, gen, h.cause(cl, err))
}

func (h *Presence) cause(cl *mqtt.Client, err error) presence.Cause {
	// First: the close that ends a moved connection carries
	// ErrSessionTakenOver, which would read as a local takeover.
	if h.moving.CompareAndDelete(cl.ID, cl) {
		return presence.CauseMoved
	}
	if cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || errors.Is(err, packets.ErrSessionTakenOver) {
		return presence.CauseTakeover
	}
	if v, ok := h.arriving.Load(cl.ID); ok && v.(*mqtt.Client) != cl && !v.(*mqtt.Client).Closed() {
		return presence.CauseTakeover
	}
	if err == nil {
		return presence.CauseDisconnect // DISCONNECT: mochi's read loop ends without error
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return presence.CauseKeepAlive
	}
	return presence.CauseWill
}

// PresencePublisher publishes presence aggregates as retained QoS 1
// messages through mochi's inline client, which also updates the retained
// store (and the session store that persists it).
type PresencePublisher struct{ Server *mqtt.Server }

func (p PresencePublisher) PublishPresence(uid string, payload []byte) error {
	return p.Server.Publish(PresenceTopic(uid), payload, true, 1)
}
