package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverGrace is how long a taken-over client is remembered. A publisher
// holds an old *mqtt.Client only for the length of one fan-out call
// (publishToSubscribers fetches each subscriber from Clients and delivers
// at once), so a delivery that is late by more than a minute cannot happen;
// the bound only keeps the maps from growing.
const takeoverGrace = time.Minute

// takeovers hands QoS>0 deliveries that reach a taken-over session to the
// client that took it over.
//
// mochi v2.7.9 acknowledges a PUBLISH before it fans it out (server.go
// processPublish writes the PUBACK, then publishToSubscribers fetches each
// subscriber with Clients.Get and calls publishToClient). A reconnect with
// the same client id takes the session over at the same time (attachClient:
// inheritClientSession marks the old client taken over, clones its inflight
// map into the new client and clears the old one; then Clients.Add, CONNACK
// and the resend of the inherited inflight). A fan-out that fetched the old
// client before Clients.Add stores its delivery in the old client's
// inflight map: after the clone it is either cleared with the rest
// (OnQosDropped) or left in a client nobody reads again. Either way a
// message the broker acknowledged would never be delivered.
//
// The hook takes such deliveries out of the old client and gives them to
// the successor once it has sent its CONNACK (OnSessionEstablished), or at
// once on a goroutine of their own if it already has; never on the
// publisher's goroutine, which may be a shared chat writer. A successor
// that started clean discarded the old session by design, so nothing is
// handed to it.
//
// Everything the old client's inflight map loses after a takeover passes
// through OnQosDropped, including the inherited messages mochi clears; the
// successor's inflight map decides which of them it already holds. That is
// read on the successor's own goroutine, or after it marked itself ready
// under mu, never while inheritClientSession may still replace it.
type takeovers struct {
	mqtt.HookBase
	srv   *mqtt.Server
	log   *slog.Logger
	grace time.Duration

	mu sync.Mutex
	// byOld finds the takeover of a client taken over. Its keys are weak:
	// the old client is dead once the grace period is over, and holding it
	// (its write queue is allocated up front) for every reconnect of the
	// last minute would cost memory in a reconnect storm.
	byOld   map[weak.Pointer[mqtt.Client]]*takeover
	byNew   map[*mqtt.Client]*takeover // the successor → its takeover
	stopped bool

	// Counts for the debug log and the tests: late deliveries given to a
	// successor, and late deliveries dropped (clean start, no room, …).
	handed, dropped atomic.Int64
}

// takeover is one client id changing hands.
type takeover struct {
	old     weak.Pointer[mqtt.Client]
	to      *mqtt.Client
	resumed bool             // the successor kept the session (mochi's condition in inheritClientSession)
	ready   bool             // the successor sent its CONNACK and mochi's resend
	late    []packets.Packet // waiting for ready; may hold packets the successor inherited anyway
	timer   *time.Timer
	// props is the successor's identity for the other hooks (announce),
	// read on its goroutine before the session is established: its
	// Properties change later (a DISCONNECT's session expiry, the will).
	props mqtt.ClientProperties
}

func newTakeovers(srv *mqtt.Server, log *slog.Logger) *takeovers {
	return &takeovers{
		srv: srv, log: log.With("component", "takeover"), grace: takeoverGrace,
		byOld: make(map[weak.Pointer[mqtt.Client]]*takeover), byNew: make(map[*mqtt.Client]*takeover),
	}
}

func (h *takeovers) ID() string { return "mqchat-takeover" }

func (h *takeovers) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnQosPublish, mqtt.OnQosDropped:
		return true
	}
	return false
}

// OnSessionEstablish runs on the new connection's goroutine just before
// inheritClientSession, which looks the client id up the same way.
func (h *takeovers) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	existing, ok := h.srv.Clients.Get(cl.ID)
	if !ok || existing == cl {
		return
	}
	// The condition under which inheritClientSession discards the session
	// ([MQTT-3.1.2-4]): mirrored, not shared, as mochi keeps it inline.
	resumed := !(pk.Connect.Clean || existing.Properties.Clean && existing.Properties.ProtocolVersion < 5)
	t := &takeover{old: weak.Make(existing), to: cl, resumed: resumed, props: cl.Properties}
	t.props.Will = mqtt.Will{}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	if prev := h.byNew[existing]; prev != nil && !prev.ready {
		// existing took a session over but never got to CONNACK: what it
		// was to be given goes on to its own successor.
		if resumed {
			t.late = append(t.late, prev.late...)
		} else {
			h.dropped.Add(int64(len(prev.late)))
		}
		prev.late = nil
	}
	if prev := h.byOld[t.old]; prev != nil {
		// Two connections racing for one id: the later one is current.
		h.forget(prev)
	}
	h.byOld[t.old], h.byNew[cl] = t, t
	t.timer = time.AfterFunc(h.grace, func() { h.expire(t) })
}

// OnSessionEstablished runs on the successor's goroutine after its CONNACK
// and mochi's resend of what it inherited, before it reads any packet.
func (h *takeovers) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	t := h.byNew[cl]
	if t == nil {
		h.mu.Unlock()
		return
	}
	t.ready = true
	late := t.late
	t.late = nil
	h.mu.Unlock()
	for _, pk := range late {
		h.deliver(t, pk)
	}
}

// OnQosPublish sees a delivery stored in the inflight map of a client that
// has been taken over. The hook is registered after every other hook, so
// they have all seen the delivery; clearing the old client's inflight
// reports it (and anything else left there) dropped to all of them, as
// mochi's own clear does, and to OnQosDropped below, which hands it on.
// Exactly one clear deletes each packet, so each is handed on once.
func (h *takeovers) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if resends != 0 || pk.FixedHeader.Type != packets.Publish || cl.Net.Inline || !cl.IsTakenOver() {
		return
	}
	h.mu.Lock()
	_, known := h.byOld[weak.Make(cl)]
	h.mu.Unlock()
	if known {
		cl.ClearInflights()
	}
}

// OnQosDropped takes the deliveries a taken-over client loses: mochi's
// clear in inheritClientSession (mostly messages the successor inherited,
// and any stored between the clone and the clear) and the clear in
// OnQosPublish above. The clean-session takeover clears before it marks
// the client taken over, so its drops are not seen here: by design.
func (h *takeovers) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || !cl.IsTakenOver() || h.expired(pk) {
		return
	}
	h.handOff(cl, pk)
}

// expired mirrors mochi's ClearExpiredInflights: such a message is dropped
// on purpose, not handed on.
func (h *takeovers) expired(pk packets.Packet) bool {
	now := time.Now().Unix()
	maxExpiry := h.srv.Options.Capabilities.MaximumMessageExpiryInterval
	return pk.ProtocolVersion == 5 && pk.Expiry > 0 && pk.Expiry < now ||
		maxExpiry > 0 && now-pk.Created > maxExpiry
}

// handOff gives pk, lost by old, to the client now holding old's session:
// queued until that client is ready, or delivered on a goroutine of its own.
func (h *takeovers) handOff(old *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	t := h.byOld[weak.Make(old)]
	// A successor may itself have been taken over meanwhile.
	for t != nil && t.resumed {
		next := h.byOld[weak.Make(t.to)]
		if next == nil {
			break
		}
		t = next
	}
	switch {
	case t == nil || !t.resumed:
		h.mu.Unlock()
		h.dropped.Add(1)
		h.log.Debug("late delivery to a taken-over session dropped: the session was not kept",
			"client", old.ID, "topic", pk.TopicName)
	case !t.ready:
		t.late = append(t.late, pk)
		h.mu.Unlock()
	default:
		h.mu.Unlock()
		go h.deliver(t, pk)
	}
}

// deliver gives pk to t's successor, as publishToClient would have, with
// a packet id of its own. Called on the successor's goroutine or after it
// marked itself ready, so its inflight map is no longer being replaced.
func (h *takeovers) deliver(t *takeover, pk packets.Packet) {
	to := t.to
	if have, ok := to.State.Inflight.Get(pk.PacketID); ok {
		if samePacket(have, pk) {
			return // inherited with the session and resent by mochi
		}
		if have.FixedHeader.Type == packets.Publish {
			// The hooks key deliveries by client id and packet id, and the
			// successor has already used this one: the old delivery's
			// OnQosPublish and OnQosDropped, both before this, may have
			// overwritten or deleted the successor's record. Write it again.
			h.announce(to, t.props, have)
		}
	}
	if pk.TopicName == "" {
		// Sent to the old connection as a bare topic alias; mochi keeps no
		// way back from an alias to its topic. (mochi's own resend of an
		// inherited aliased packet fails the same way.)
		h.drop(to, pk, "the old connection's topic alias hides its topic")
		return
	}
	if to.State.Inflight.Len() >= int(h.srv.Options.Capabilities.MaximumInflight) {
		h.drop(to, pk, "client store quota reached")
		return
	}
	id, err := to.NextPacketID()
	if err != nil {
		h.drop(to, pk, "packet ids exhausted")
		return
	}
	out := pk
	out.PacketID = uint16(id)
	out.FixedHeader.Dup = false
	// A fresh connection has no aliases; the full topic is always valid.
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	if to.State.Inflight.Set(out) {
		atomic.AddInt64(&h.srv.Info.Inflight, 1)
	}
	to.State.Inflight.DecreaseSendQuota() // its PUBACK gives it back
	h.announce(to, t.props, out)
	h.handed.Add(1)
	h.log.Debug("late delivery to a taken-over session handed to its successor",
		"client", to.ID, "topic", out.TopicName, "packet_id", out.PacketID)
	if to.IsTakenOver() {
		// Taken over in turn: the clear reports it dropped and it moves on.
		to.ClearInflights()
		return
	}
	if !to.Closed() {
		// Like mochi's resend; if this fails the connection is going and the
		// message stays inflight for the next one.
		_ = to.WritePacket(out)
	}
}

// announce runs every registered hook's OnQosPublish for out as a delivery
// to cl, whose properties are props (the session store persists it, hooks.Delivery tracks it). mochi
// keeps its hook list private; the one exported way to call those hooks
// for a packet is a client's resend, so the packet is resent by a detached
// client with cl's identity: same id and properties, no connection, so
// nothing is written (WritePacket returns at the nil connection). Hooks
// see it flagged Dup, as after any resend.
func (h *takeovers) announce(cl *mqtt.Client, props mqtt.ClientProperties, out packets.Packet) {
	shadow := h.srv.NewClient(nil, cl.Net.Listener, cl.ID, false)
	shadow.Properties = props
	shadow.Net.Remote = cl.Net.Remote
	shadow.State.Inflight.Set(out)
	_ = shadow.ResendInflightMessages(false)
	shadow.Stop(nil)
}

func (h *takeovers) drop(to *mqtt.Client, pk packets.Packet, reason string) {
	atomic.AddInt64(&h.srv.Info.InflightDropped, 1)
	h.dropped.Add(1)
	h.log.Warn("late delivery to a taken-over session dropped", "client", to.ID, "topic", pk.TopicName, "reason", reason)
}

// samePacket reports whether a and b are copies of one delivery: mochi's
// inflight Clone and GetAll copy packets but share their payload, while
// publishToClient gives every delivery a payload of its own. Empty payloads
// are told apart by what mochi keeps of them instead; two empty deliveries
// on one topic from one origin in the same second under the same packet id
// carry the same thing.
func samePacket(a, b packets.Packet) bool {
	if a.PacketID != b.PacketID || len(a.Payload) != len(b.Payload) {
		return false
	}
	if len(a.Payload) > 0 {
		return &a.Payload[0] == &b.Payload[0]
	}
	return a.TopicName == b.TopicName && a.Origin == b.Origin && a.Created == b.Created
}

// expire forgets t after the grace period. A successor that never reached
// its CONNACK keeps what it was to be given in its inflight map, for mochi
// to resend when the client next connects, if it still holds the session.
func (h *takeovers) expire(t *takeover) {
	h.mu.Lock()
	h.forget(t)
	late := t.late
	t.late = nil
	h.mu.Unlock()
	if len(late) == 0 {
		return
	}
	// Clients.Get returning t.to orders this read of its inflight map after
	// inheritClientSession replaced it.
	if cur, ok := h.srv.Clients.Get(t.to.ID); !ok || cur != t.to {
		for _, pk := range late {
			h.drop(t.to, pk, "the successor no longer holds the session")
		}
		return
	}
	for _, pk := range late {
		h.deliver(t, pk)
	}
}

// forget removes t from the maps; mu is held.
func (h *takeovers) forget(t *takeover) {
	if t.timer != nil {
		t.timer.Stop()
	}
	if h.byOld[t.old] == t {
		delete(h.byOld, t.old)
	}
	if h.byNew[t.to] == t {
		delete(h.byNew, t.to)
	}
}

// Stop cancels the expiry timers when the broker closes.
func (h *takeovers) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for _, t := range h.byOld {
		h.forget(t)
	}
	return nil
}
