package broker

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// packetIDs keeps the client's packet identifiers apart from the server's.
// MQTT gives each side its own space (MQTT 5 §2.2.1), but mochi v2.7.9 keeps
// a client's outbound deliveries and the identifiers of its inbound packets
// in one inflight map (mochi-mqtt/server#545). A device that has not yet
// acknowledged delivery N and then sends its own QoS 1 PUBLISH, SUBSCRIBE or
// UNSUBSCRIBE numbered N (paho, mosquitto and most clients count from 1, as
// mochi does) would otherwise see the SUBSCRIBE refused with 0x91, or have
// delivery N silently dropped from the session: never resent after a
// reconnect, and its PUBACK ignored.
//
// The hook sets the server's entry aside while mochi processes such a
// packet and puts it back afterwards. A client's packets are processed one
// at a time on its read goroutine, so nothing else can acknowledge N in
// between, and mochi allocates new identifiers upwards from the last one,
// so it would have to wrap through 65535 identifiers to pick N meanwhile.
// Inbound QoS 2 keeps its PUBREC in the same map until the PUBREL and stays
// as mochi has it: chat clients publish at QoS 1.
type packetIDs struct {
	mqtt.HookBase
	held sync.Map // *mqtt.Client → packets.Packet set aside
}

func (h *packetIDs) ID() string { return "mqchat-packet-ids" }

func (h *packetIDs) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnPacketProcessed, mqtt.OnDisconnect:
		return true
	}
	return false
}

func (h *packetIDs) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.restore(cl) // a packet that failed validation never reached OnPacketProcessed
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos != 1 {
			return pk, nil
		}
	case packets.Subscribe, packets.Unsubscribe:
	default:
		return pk, nil
	}
	if cl.Net.Inline || pk.PacketID == 0 {
		return pk, nil
	}
	out, ok := cl.State.Inflight.Get(pk.PacketID)
	// Publish and Pubrel entries are the server's own flows; anything else
	// under this id belongs to the client's space already.
	if !ok || out.FixedHeader.Type != packets.Publish && out.FixedHeader.Type != packets.Pubrel {
		return pk, nil
	}
	cl.State.Inflight.Delete(pk.PacketID)
	h.held.Store(cl, out)
	return pk, nil
}

func (h *packetIDs) OnPacketProcessed(cl *mqtt.Client, _ packets.Packet, _ error) { h.restore(cl) }

func (h *packetIDs) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.restore(cl) }

func (h *packetIDs) restore(cl *mqtt.Client) {
	if v, ok := h.held.LoadAndDelete(cl); ok {
		cl.State.Inflight.Set(v.(packets.Packet))
	}
}

// InboundAck reports whether pk is mochi's own acknowledgement of a QoS 1
// PUBLISH the client sent. mochi hands those to OnQosPublish and
// OnQosComplete like the client's acknowledgements of server deliveries;
// they are told apart by their creation time, which mochi stamps on the
// packets it builds and never on packets read from the wire.
func InboundAck(pk packets.Packet) bool {
	return pk.FixedHeader.Type == packets.Puback && pk.Created != 0
}
