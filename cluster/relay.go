package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
)

// Local delivers what another node relayed to this node's sessions of uid
// (hooks.Outbox): kind names the topic, as Relay was given it.
type Local interface {
	DeliverLocal(uid, kind, device string, qos byte, payload []byte)
}

// Takeovers closes this node's session of a client id that connected to
// another node (the broker side); found reports whether there was one, and
// subs are its subscriptions when keep asks for them (the device resumes
// its session there).
type Takeovers interface {
	CloseMoved(uid, clientID string, keep bool) (subs []packets.Subscription, found bool)
}

// Acks takes acknowledgements of inbox deliveries made on other nodes, for
// chats this node owns (push.Tracker).
type Acks interface {
	Delivered(uid, chat string, seq uint64)
}

// Presence is the presence service's cluster side (services/presence).
type Presence interface {
	SetRemote(node, uid string, devices int)
	DropNode(node string)
	LocalSnapshot() map[string]int
}

// Handlers are the node's local services; set them before Start.
type Handlers struct {
	Owned     OwnedSender
	Local     Local
	Takeovers Takeovers
	Acks      Acks
	Presence  Presence
}

type handlers struct {
	owned    OwnedSender
	local    Local
	takeover Takeovers
	acks     Acks
	presence Presence
}

// Serve sets the services that answer other nodes.
func (n *Node) Serve(h Handlers) {
	n.hooksMu.Lock()
	defer n.hooksMu.Unlock()
	n.owned, n.local, n.takeover, n.acks = h.Owned, h.Local, h.Takeovers, h.Acks
	n.pres.setPresence(h.Presence)
}

func (n *Node) handlers() handlers {
	n.hooksMu.Lock()
	defer n.hooksMu.Unlock()
	return handlers{owned: n.owned, local: n.local, takeover: n.takeover, acks: n.acks, presence: n.pres.presence()}
}

// kindTakeover is the per-user subject's request to close a client id.
const kindTakeover = "takeover"

// subscribe sets up the subjects every node serves.
func (n *Node) subscribe() error {
	n.calls.init()
	subs := []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{n.subject("node", n.id, "send"), n.serveSend},
		{n.subject("node", n.id, "presence"), n.servePresenceSnapshot},
		{n.subject("node", n.id, "acked"), n.serveAcked},
		{n.replyPrefix() + "*", func(m *nats.Msg) { n.calls.answer(n, m) }},
		{n.subject("presence"), n.servePresenceUpdate},
		{n.subject("invalidate"), n.serveInvalidate},
	}
	for _, s := range subs {
		sub, err := n.nc.Subscribe(s.subject, s.handle)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", s.subject, err)
		}
		n.subs = append(n.subs, sub)
	}
	if err := n.nc.FlushTimeout(n.opts.RequestTimeout); err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	return nil
}

func (n *Node) userSubject(uid, kind string) string { return n.subject("u", uid, kind) }

// Relay sends payload for uid's sessions on other nodes. Only nodes holding
// a session of uid subscribe to its subject, so a user connected nowhere
// else costs one publish that NATS drops.
func (n *Node) Relay(uid, kind string, qos byte, payload []byte) {
	msg := nats.NewMsg(n.userSubject(uid, kind))
	msg.Data = payload
	if qos == 0 {
		msg.Header.Set("Mqchat-Qos", "0")
	}
	if err := n.nc.PublishMsg(msg); err != nil {
		n.log.Warn("relay to other nodes", "user", uid, "kind", kind, "error", err)
		return
	}
	n.m.Relayed("out", kind)
}

// kindDevice is a device message for one device of the user, named in
// the deviceHeader.
const (
	kindDevice   = "device"
	deviceHeader = "Mqchat-Device"
)

// RelayDevice sends a device message for device of uid to the other
// nodes; the one holding the device publishes it to its inbox topic.
func (n *Node) RelayDevice(uid, device string, payload []byte) {
	msg := nats.NewMsg(n.userSubject(uid, kindDevice))
	msg.Data = payload
	msg.Header.Set(deviceHeader, device)
	if err := n.nc.PublishMsg(msg); err != nil {
		n.log.Warn("relay device message to other nodes", "user", uid, "device", device, "error", err)
		return
	}
	n.m.Relayed("out", kindDevice)
}

// users holds the per-user subscriptions: one per user with at least one
// session on this node.
type users struct {
	mu   sync.Mutex
	subs map[string]*userSub
}

type userSub struct {
	sub     *nats.Subscription
	clients int
}

func (u *users) init() { u.subs = make(map[string]*userSub) }

// Hold subscribes this node to uid's subject (first session of uid here)
// and waits until NATS has the interest, so nothing relayed after the
// client's CONNACK is missed. Release undoes one Hold.
func (n *Node) Hold(uid string) error {
	n.users.mu.Lock()
	s := n.users.subs[uid]
	if s != nil {
		s.clients++
		n.users.mu.Unlock()
		return nil
	}
	sub, err := n.nc.Subscribe(n.userSubject(uid, "*"), func(m *nats.Msg) { n.serveUser(uid, m) })
	if err != nil {
		n.users.mu.Unlock()
		return fmt.Errorf("cluster: subscribe to user %s: %w", uid, err)
	}
	n.users.subs[uid] = &userSub{sub: sub, clients: 1}
	count := len(n.users.subs)
	n.users.mu.Unlock()
	n.m.SetUserSubscriptions(count)
	if err := n.nc.FlushTimeout(n.opts.RequestTimeout); err != nil {
		return fmt.Errorf("cluster: subscribe to user %s: %w", uid, err)
	}
	return nil
}

// Release ends one Hold of uid.
func (n *Node) Release(uid string) {
	n.users.mu.Lock()
	s := n.users.subs[uid]
	if s == nil {
		n.users.mu.Unlock()
		return
	}
	s.clients--
	if s.clients > 0 {
		n.users.mu.Unlock()
		return
	}
	delete(n.users.subs, uid)
	count := len(n.users.subs)
	n.users.mu.Unlock()
	if err := s.sub.Unsubscribe(); err != nil {
		n.log.Debug("unsubscribe user subject", "user", uid, "error", err)
	}
	n.m.SetUserSubscriptions(count)
}

func (n *Node) serveUser(uid string, m *nats.Msg) {
	kind := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	h := n.handlers()
	if kind == kindTakeover {
		n.serveTakeover(uid, m, h.takeover)
		return
	}
	if h.local == nil {
		return
	}
	var qos byte = 1
	if m.Header.Get("Mqchat-Qos") == "0" {
		qos = 0
	}
	n.m.Relayed("in", kind)
	h.local.DeliverLocal(uid, kind, m.Header.Get(deviceHeader), qos, m.Data)
}

type takeoverRequest struct {
	Client string `json:"client"`
	Node   string `json:"node"`
	Keep   bool   `json:"keep,omitempty"` // the device resumes its session: send its subscriptions
}

type takeoverReply struct {
	Found bool                   `json:"found"`
	Subs  []packets.Subscription `json:"subs,omitempty"`
}

func (n *Node) serveTakeover(uid string, m *nats.Msg, t Takeovers) {
	var req takeoverRequest
	if t == nil || json.Unmarshal(m.Data, &req) != nil || req.Node == n.id {
		return
	}
	subs, found := t.CloseMoved(uid, req.Client, req.Keep)
	if !found {
		return // only the node that had the client answers
	}
	b, _ := json.Marshal(takeoverReply{Found: true, Subs: subs})
	if m.Reply != "" {
		if err := m.Respond(b); err != nil {
			n.log.Warn("answer takeover", "error", err)
		}
	}
}

// takeoverWait is how long a takeover waits for the node holding the
// client id when some node holds sessions of the user but none answers
// (the client id was nowhere else: a new device or a clean start).
const takeoverWait = 150 * time.Millisecond

// Takeover closes clientID of uid on whichever other node has it, before
// this node accepts the new connection: the same device is never live on
// two nodes. It returns when the old connection is closed (with its
// session's subscriptions when keep asks for them), when no other node
// holds uid at all (NATS answers "no responders" at once), or after a
// short wait when other nodes hold uid but not this client id.
func (n *Node) Takeover(ctx context.Context, uid, clientID string, keep bool) []packets.Subscription {
	b, _ := json.Marshal(takeoverRequest{Client: clientID, Node: n.id, Keep: keep})
	msg := nats.NewMsg(n.userSubject(uid, kindTakeover))
	msg.Data = b
	wait, err := n.calls.send(n, msg, "")
	if err != nil {
		n.m.Takeover("error")
		n.log.Warn("takeover request", "user", uid, "client", clientID, "error", err)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, takeoverWait)
	defer cancel()
	resp, err := wait(wctx)
	var rep takeoverReply
	switch {
	case err == nil && json.Unmarshal(resp.Data, &rep) == nil && rep.Found:
		n.m.Takeover("closed")
		return rep.Subs
	case err == nil || errors.Is(err, nats.ErrNoResponders) || wctx.Err() != nil:
		n.m.Takeover("none")
	default:
		n.m.Takeover("error")
		n.log.Warn("takeover request", "user", uid, "client", clientID, "error", err)
	}
	return nil
}

type ackNotice struct {
	User string `json:"u"`
	Chat string `json:"c"`
	Seq  uint64 `json:"s"`
}

// Delivered tells the owner of chat that a device of uid acknowledged seq
// on this node, so the owner's push tracker does not push a message that
// arrived. Acknowledgements of chats this node owns stay local.
func (n *Node) Delivered(uid, chat string, seq uint64) {
	owner, local := n.Owner(chat)
	if local {
		return
	}
	b, _ := json.Marshal(ackNotice{User: uid, Chat: chat, Seq: seq})
	if err := n.nc.Publish(n.subject("node", owner, "acked"), b); err != nil {
		n.log.Debug("forward delivery ack", "error", err)
	}
}

func (n *Node) serveAcked(m *nats.Msg) {
	acks := n.handlers().acks
	var a ackNotice
	if acks == nil || json.Unmarshal(m.Data, &a) != nil {
		return
	}
	acks.Delivered(a.User, a.Chat, a.Seq)
}
