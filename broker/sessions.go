package broker

import (
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
)

// sessionStore is mochi's Pebble session hook with two changes.
//
// It leaves out the writes for sessions that end with their connection
// (MQTT 5 session expiry 0, or a 3.1.1 clean session): nothing of those can
// ever be restored, yet the hook would write every QoS 1 delivery to them
// and delete it again on its PUBACK. Deletes other than those per-delivery
// ones still pass, so records of an earlier persistent session under the
// same client id are cleaned up as before.
//
// And it stops writing once stopped: mochi goes on calling hooks while the
// node shuts down (the receipts flushed after the broker closes still
// publish), and pebble panics on a closed database. mu is held shared by
// every write and exclusively by Stop.
type sessionStore struct {
	*pebble.Hook
	mu      sync.RWMutex
	stopped bool
	restore restoreLimits
}

func newSessionStore(limits restoreLimits) *sessionStore {
	return &sessionStore{Hook: new(pebble.Hook), restore: limits}
}

// write runs f unless the store has stopped.
func (h *sessionStore) write(f func()) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !h.stopped {
		f()
	}
}

func (h *sessionStore) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil
	}
	h.stopped = true
	return h.Hook.Stop()
}

// ephemeral mirrors mochi's own test for a session that expires on
// disconnect (server.go, "expire :=").
func ephemeral(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

func (h *sessionStore) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) {
		h.write(func() { h.Hook.OnSessionEstablished(cl, pk) })
	}
}

func (h *sessionStore) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) {
		h.write(func() { h.Hook.OnWillSent(cl, pk) })
	}
}

// OnSubscribed stores only the filters granted. mochi's hook stores every
// filter of the SUBSCRIBE with its reason code as the QoS, refused ones
// too, and restores them all as subscriptions: without this a client could
// fill its persisted session with filters it was never given.
func (h *sessionStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	if ephemeral(cl) {
		return
	}
	granted := pk
	granted.Filters = nil
	var codes []byte
	for i, rc := range reasonCodes {
		if rc < packets.ErrUnspecifiedError.Code {
			granted.Filters, codes = append(granted.Filters, pk.Filters[i]), append(codes, rc)
		}
	}
	if len(granted.Filters) > 0 {
		h.write(func() { h.Hook.OnSubscribed(cl, granted, codes) })
	}
}

// OnQosPublish and OnQosComplete leave out mochi's acknowledgements of the
// client's own QoS 1 publishes: stored under the client's packet id they
// would overwrite, then delete, the record of a server delivery that shares
// the id (see packetIDs).
func (h *sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if !ephemeral(cl) && !InboundAck(pk) {
		h.write(func() { h.Hook.OnQosPublish(cl, pk, sent, resends) })
	}
}

func (h *sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) && !InboundAck(pk) {
		h.write(func() { h.Hook.OnQosComplete(cl, pk) })
	}
}

func (h *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) {
		h.write(func() { h.Hook.OnQosDropped(cl, pk) })
	}
}

// The remaining writes pass unchanged, behind the stop guard.

func (h *sessionStore) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.write(func() { h.Hook.OnDisconnect(cl, err, expire) })
}

func (h *sessionStore) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.write(func() { h.Hook.OnUnsubscribed(cl, pk) })
}

func (h *sessionStore) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	// $SYS values are published afresh every second (sysTopics) and mochi
	// never stored them when it published them itself.
	if strings.HasPrefix(pk.TopicName, mqtt.SysPrefix+"/") {
		return
	}
	h.write(func() { h.Hook.OnRetainMessage(cl, pk, r) })
}

func (h *sessionStore) OnSysInfoTick(sys *system.Info) {
	h.write(func() { h.Hook.OnSysInfoTick(sys) })
}

func (h *sessionStore) OnRetainedExpired(filter string) {
	h.write(func() { h.Hook.OnRetainedExpired(filter) })
}

func (h *sessionStore) OnClientExpired(cl *mqtt.Client) {
	h.write(func() { h.Hook.OnClientExpired(cl) })
}
