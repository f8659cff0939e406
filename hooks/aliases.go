package hooks

import (
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/chat"
)

// OnPacketRead checks a PUBLISH's topic alias before mochi registers it.
//
// An alias above the maximum is left to mochi, which refuses it right
// after this hook (Packet.PublishValidate) by disconnecting an MQTT 5
// client with 0x94 Topic Alias invalid; the hook only counts it and tells
// the user. An alias naming a topic longer than MaxTopicBytes would be
// kept for the whole connection, and refusing only the PUBLISH would leave
// the client using an alias the server never learnt, so the client is
// disconnected with 0x97 Quota exceeded before mochi stores it. 3.1.1 has
// no aliases (mochi decodes no properties for it).
func (h *Limits) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.Properties.TopicAlias == 0 || cl.Net.Inline {
		return pk, nil
	}
	switch alias := pk.Properties.TopicAlias; {
	case alias > h.aliasMax:
		h.count(LimitTopicAlias, 1)
		h.tell(cl, codeTopicAliasInvalid, packets.ErrTopicAliasInvalid, pk.TopicName,
			fmt.Sprintf("topic alias %d is above the maximum of %d announced in CONNACK", alias, h.aliasMax))
	case h.opts.MaxTopicBytes > 0 && len(pk.TopicName) > h.opts.MaxTopicBytes:
		msg := fmt.Sprintf("topic alias %d names a topic of %d bytes; aliased topics may have at most %d", alias, len(pk.TopicName), h.opts.MaxTopicBytes)
		h.count(LimitTopicBytes, 1)
		h.tell(cl, string(chat.CodeQuota), packets.ErrQuotaExceeded, "", msg)
		_ = h.opts.Server.DisconnectClient(cl, quota(msg))
		return pk, packets.ErrRejectPacket // ends the read loop; nothing is registered
	}
	return pk, nil
}

// OnPacketEncode announces the Topic Alias Maximum in a successful MQTT 5
// CONNACK. mochi v2.7.9 enforces its TopicAliasMaximum capability but never
// sends it, and a client told nothing must assume 0 (MQTT 5 §3.2.2.3.8).
func (h *Limits) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ProtocolVersion == 5 && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		pk.Properties.TopicAliasMaximum = h.aliasMax
	}
	return pk
}
