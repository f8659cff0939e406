package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sessionStore is mochi's Pebble session hook minus the writes for sessions
// that end with their connection (MQTT 5 session expiry 0, or a 3.1.1 clean
// session): nothing of those can ever be restored, yet the hook would write
// every QoS 1 delivery to them and delete it again on its PUBACK. Deletes
// other than those per-delivery ones still pass, so records of an earlier
// persistent session under the same client id are cleaned up as before.
type sessionStore struct {
	*pebble.Hook
}

// ephemeral mirrors mochi's own test for a session that expires on
// disconnect (server.go, "expire :=").
func ephemeral(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

func (h sessionStore) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) {
		h.Hook.OnSessionEstablished(cl, pk)
	}
}

func (h sessionStore) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) {
		h.Hook.OnWillSent(cl, pk)
	}
}

func (h sessionStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	if !ephemeral(cl) {
		h.Hook.OnSubscribed(cl, pk, reasonCodes)
	}
}

// OnQosPublish and OnQosComplete leave out mochi's acknowledgements of the
// client's own QoS 1 publishes: stored under the client's packet id they
// would overwrite, then delete, the record of a server delivery that shares
// the id (see packetIDs).
func (h sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if !ephemeral(cl) && !InboundAck(pk) {
		h.Hook.OnQosPublish(cl, pk, sent, resends)
	}
}

func (h sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) && !InboundAck(pk) {
		h.Hook.OnQosComplete(cl, pk)
	}
}

func (h sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !ephemeral(cl) {
		h.Hook.OnQosDropped(cl, pk)
	}
}
