package hooks

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ClusterNode is the cluster's side of sessions (cluster.Node).
type ClusterNode interface {
	// Takeover closes clientID on whichever other node has it; with
	// keep, it returns that session's subscriptions.
	Takeover(ctx context.Context, uid, clientID string, keep bool) []packets.Subscription
	// Hold subscribes this node to uid's deliveries from other nodes
	// while uid has a session here; Release undoes one Hold.
	Hold(uid string) error
	Release(uid string)
}

// SessionDropper ends a session for good (broker.Broker.DropSession).
type SessionDropper interface {
	DropSession(cl *mqtt.Client, code packets.Code)
}

// Cluster keeps a node's sessions consistent with the rest of the cluster:
// a device connecting here first closes its connection on any other node
// (the same client id is never live twice), and the node receives a user's
// deliveries from the other nodes while it holds a session of that user,
// connected or persistent.
type Cluster struct {
	mqtt.HookBase
	node     ClusterNode
	server   *mqtt.Server
	dropper  SessionDropper
	presence *Presence
	logger   *slog.Logger
	timeout  time.Duration

	mu   sync.Mutex
	held map[string]*mqtt.Client // client id → the connection whose session holds its user
}

// ClusterOptions configures the Cluster hook.
type ClusterOptions struct {
	Node     ClusterNode
	Server   *mqtt.Server
	Dropper  SessionDropper
	Presence *Presence // counts a device moved to another node out
	Logger   *slog.Logger
	Timeout  time.Duration // bounds a takeover
}

// NewCluster returns the hook.
func NewCluster(o ClusterOptions) *Cluster {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cluster{
		node: o.Node, server: o.Server, dropper: o.Dropper, presence: o.Presence, logger: o.Logger,
		timeout: o.Timeout, held: make(map[string]*mqtt.Client),
	}
}

func (h *Cluster) ID() string { return "mqchat-cluster" }

func (h *Cluster) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnClientExpired}, []byte{b})
}

// OnSessionEstablish runs before the CONNACK: the old connection of this
// client id on another node is closed first, and this node subscribes to
// the user's deliveries before the client can subscribe to its topics.
func (h *Cluster) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	uid := string(cl.Properties.Username)
	if uid == "" {
		return // anonymous clients have no user subtree
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	keep := !pk.Connect.Clean
	subs := h.node.Takeover(ctx, uid, cl.ID, keep)
	cancel()
	if keep && len(subs) > 0 {
		h.resume(cl, subs)
	}
	h.mu.Lock()
	prev := h.held[cl.ID]
	h.held[cl.ID] = cl
	h.mu.Unlock()
	if prev != nil {
		return // a local takeover: the session, and its hold, carry over
	}
	if err := h.node.Hold(uid); err != nil {
		h.logger.Error("cluster: receive user deliveries", "user", uid, "client", cl.ID, "error", err)
	}
}

// resume gives a device that moved here the session it had on another
// node: a stand-in for it, holding its subscriptions, is registered the way
// mochi restores stored sessions at start-up, and mochi's own takeover of
// that stand-in then carries the subscriptions over and answers
// session_present. Queued QoS 1 messages do not move: sync recovers them.
func (h *Cluster) resume(cl *mqtt.Client, subs []packets.Subscription) {
	if _, ok := h.server.Clients.Get(cl.ID); ok {
		return // a session of its own here wins
	}
	old := h.server.NewClient(nil, cl.Net.Listener, cl.ID, false)
	old.Properties.Username = cl.Properties.Username
	old.Properties.ProtocolVersion = cl.Properties.ProtocolVersion
	old.Stop(packets.ErrSessionTakenOver)
	for _, sub := range subs {
		sub.Identifiers = nil
		old.State.Subscriptions.Add(sub.Filter, sub)
		if h.server.Topics.Subscribe(cl.ID, sub) {
			atomic.AddInt64(&h.server.Info.Subscriptions, 1) // as mochi counts its own
		}
	}
	h.server.Clients.Add(old)
}

// OnDisconnect releases the hold of a session that ends with its
// connection; a persistent session keeps it until it expires.
func (h *Cluster) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.release(cl)
	}
}

// OnClientExpired releases the hold of a persistent session that expired.
func (h *Cluster) OnClientExpired(cl *mqtt.Client) { h.release(cl) }

func (h *Cluster) release(cl *mqtt.Client) {
	uid := string(cl.Properties.Username)
	if uid == "" {
		return
	}
	h.mu.Lock()
	if h.held[cl.ID] != cl {
		h.mu.Unlock()
		return
	}
	delete(h.held, cl.ID)
	h.mu.Unlock()
	h.node.Release(uid)
}

// CloseMoved ends this node's session of clientID because the device
// connected to another node: a live connection gets DISCONNECT 0x8E
// (session taken over) and is counted out of presence here, and the
// session goes, so the device is held only where it is now.
func (h *Cluster) CloseMoved(uid, clientID string, keep bool) ([]packets.Subscription, bool) {
	cl, ok := h.server.Clients.Get(clientID)
	if !ok || string(cl.Properties.Username) != uid || cl.Net.Inline {
		return nil, false
	}
	var subs []packets.Subscription
	if keep {
		for _, sub := range cl.State.Subscriptions.GetAll() {
			subs = append(subs, sub)
		}
	}
	if h.presence != nil {
		h.presence.Moving(cl)
	}
	h.dropper.DropSession(cl, packets.ErrSessionTakenOver)
	h.release(cl)
	return subs, true
}
