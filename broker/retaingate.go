package broker

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainGate closes a data race inside mochi v2.7.9's retained-message
// index. TopicsIndex.scanMessages, which finds the retained messages for a
// SUBSCRIBE whose filter holds a wildcard, reads each topic node's
// retainPath without the node's lock, while TopicsIndex.RetainMessage
// writes it under that lock. Every retained publish (a presence update, a
// $SYS update, a device setting or clearing a retained message) racing a
// wildcard SUBSCRIBE that walks the same node is a race in mochi itself.
// (Filters without wildcards only do a map lookup under its lock.)
//
// The gate is a read-write lock: held shared across those scans and
// exclusively across every retained write. mochi offers no hook around
// either, so each is bracketed by two hook calls mochi always makes as a
// pair, on the same goroutine, with nothing between them that can return
// early:
//
//   - A scan. processSubscribe calls OnSubscribed, writes the SUBACK (whose
//     successful write ends in OnPacketSent), then scans each accepted
//     filter; processPacket calls OnPacketProcessed when processSubscribe
//     returns, however it returns. OnSubscribed notes whether an accepted
//     filter will scan, OnPacketSent takes the shared lock, and
//     OnPacketProcessed releases it. A SUBACK that fails to write never
//     reaches OnPacketSent, so nothing is taken. Taking it after the SUBACK
//     means the lock is never held across a blocking write to a client.
//   - A publish (client or inline). processPublish calls OnPublish and then
//     retainMessage, which stores and calls OnRetainMessage. OnPublish takes
//     the exclusive lock when retainMessage will store (mochi's own
//     conditions: the retain flag, RetainAvailable, not ignored), and
//     OnRetainMessage releases it. This holds only while the gate's
//     OnPublish runs last: a later hook's error would skip retainMessage.
//     Broker.Start therefore adds the gate after every other hook.
//   - An immediate will. sendLWT calls OnWill and then retainMessage: the
//     same as a publish.
//   - A delayed will. sendDelayedLWT stores it from mochi's event loop with
//     no hook before. OnWill takes the retain flag off a delayed will (mochi
//     then routes it without storing) and OnWillSent, which mochi calls
//     right after, stores it under the lock.
//   - $SYS. publishSysTopics writes with no hook at all: mochi's ticker is
//     parked and sysTopics publishes the same topics as inline publishes
//     (above); the one call inside Server.Serve runs while Broker.Start
//     holds the lock.
//
// Hooks that mochi calls while the shared lock is held (OnACLCheck,
// OnQosPublish, OnRetainPublished, for each retained message delivered)
// must never wait for anything that itself publishes a retained message,
// such as a lock held across a presence update, or the two deadlock.
type retainGate struct {
	mqtt.HookBase
	srv *mqtt.Server
	log *slog.Logger
	// retained is told about retained messages the gate stores itself
	// (delayed wills), as mochi tells OnRetainMessage hooks; nil = no one.
	retained func(cl *mqtt.Client, pk packets.Packet, r int64)

	mu sync.RWMutex
	// writing is true while a publish or will holds mu exclusively, so an
	// OnRetainMessage that no OnPublish or OnWill announced is reported
	// instead of unlocking an unlocked mutex (a fatal error).
	writing atomic.Bool
	// scans holds, per client, whether the SUBSCRIBE being processed will
	// scan (false) and whether it holds mu shared (true).
	scans sync.Map // *mqtt.Client → bool
	// delayed holds the ids of clients whose delayed will lost its retain
	// flag in OnWill and is to be stored in OnWillSent.
	delayed sync.Map // client id → struct{}
}

func newRetainGate(srv *mqtt.Server, log *slog.Logger) *retainGate {
	return &retainGate{srv: srv, log: log}
}

func (g *retainGate) ID() string { return "mqchat-retain-gate" }

func (g *retainGate) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnWill, mqtt.OnWillSent, mqtt.OnRetainMessage,
		mqtt.OnSubscribed, mqtt.OnPacketSent, mqtt.OnPacketProcessed, mqtt.OnSessionEstablished, mqtt.OnClientExpired:
		return true
	}
	return false
}

// exclusive runs f with every scan and retained write shut out.
func (g *retainGate) exclusive(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
}

// shared runs f as a scan: retained writes wait until it returns.
func (g *retainGate) shared(f func()) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	f()
}

func (g *retainGate) retainAvailable() bool {
	return g.srv.Options.Capabilities.RetainAvailable != 0
}

func (g *retainGate) lockWrite() {
	g.mu.Lock()
	g.writing.Store(true)
}

func (g *retainGate) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	// The conditions of mochi's processPublish and retainMessage.
	if pk.FixedHeader.Retain && !pk.Ignore && g.retainAvailable() {
		g.lockWrite()
	}
	return pk, nil
}

func (g *retainGate) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if !will.Retain || !g.retainAvailable() {
		g.delayed.Delete(cl.ID)
		return will, nil
	}
	// sendLWT decides on the client's will, not on the one hooks return.
	if cl.Properties.Will.WillDelayInterval > 0 {
		will.Retain = false
		// mochi stores a delayed will only if its client is still known
		// when it fires; a session that ended with its connection is not.
		if ephemeral(cl) {
			g.delayed.Delete(cl.ID)
		} else {
			g.delayed.Store(cl.ID, struct{}{})
		}
		return will, nil
	}
	g.delayed.Delete(cl.ID)
	g.lockWrite()
	return will, nil
}

// OnWillSent stores a delayed will that OnWill took the retain flag off,
// as mochi's retainMessage would have after routing it.
func (g *retainGate) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.WillProperties.WillDelayInterval == 0 {
		return // an immediate will: stored through OnWill and OnRetainMessage
	}
	if _, ok := g.delayed.LoadAndDelete(cl.ID); !ok {
		return
	}
	pk.FixedHeader.Retain = true
	var r int64
	g.exclusive(func() { r = g.srv.Topics.RetainMessage(pk.Copy(false)) })
	if g.retained != nil {
		g.retained(cl, pk, r)
	}
	atomic.StoreInt64(&g.srv.Info.Retained, int64(g.srv.Topics.Retained.Len()))
}

// OnSessionEstablished forgets a delayed will mochi cancelled because its
// client came back.
func (g *retainGate) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	g.delayed.Delete(cl.ID)
}

// OnClientExpired forgets a delayed will that outlived its session: mochi
// routes it but no longer stores it.
func (g *retainGate) OnClientExpired(cl *mqtt.Client) { g.delayed.Delete(cl.ID) }

func (g *retainGate) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	if !g.writing.CompareAndSwap(true, false) {
		g.log.Error("retained message stored outside the retain gate", "client", cl.ID, "topic", pk.TopicName)
		return
	}
	g.mu.Unlock()
}

func (g *retainGate) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	for i, sub := range pk.Filters {
		if i < len(reasonCodes) && reasonCodes[i] < packets.ErrUnspecifiedError.Code && scans(sub) {
			g.scans.Store(cl, false)
			return
		}
	}
}

// scans reports whether mochi walks the topic tree for sub's retained
// messages (publishRetainedToClient and scanMessages). A filter whose
// retain handling 1 finds an existing subscription does not, but taking
// the lock for it costs only a wait.
func scans(sub packets.Subscription) bool {
	return strings.ContainsAny(sub.Filter, "+#") && !mqtt.IsSharedFilter(sub.Filter) && sub.RetainHandling != 2
}

func (g *retainGate) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Suback {
		return
	}
	if held, ok := g.scans.Load(cl); ok && !held.(bool) {
		g.mu.RLock()
		g.scans.Store(cl, true)
	}
}

func (g *retainGate) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type != packets.Subscribe {
		return
	}
	if held, ok := g.scans.LoadAndDelete(cl); ok && held.(bool) {
		g.mu.RUnlock()
	}
}
