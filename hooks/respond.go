package hooks

import (
	"encoding/json"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// responderClientID names the responder's inline client; it must differ
// from mochi's own inline client ("inline"), which the Delivery hook
// recognises as the origin of inbox messages.
const responderClientID = "mqchat-responder"

// responder publishes what Outbox (mochi's Server.Publish: topic, payload,
// retain, QoS) cannot: packets with MQTT 5 properties, namely the
// Correlation Data of an answer on a Response Topic, and events at QoS 0.
//
// It injects packets through an inline client of its own, made once the way
// mochi makes its inline client (Server.NewClient(nil, "local", id, true)):
// inline clients skip the ACL and topic checks, have an unlimited receive
// quota, and the Chat hook lets their publishes through. The client is
// deliberately not added to server.Clients: nothing needs to look it up, and
// mochi routes an inline client's QoS>0 publish straight to subscribers.
// Subscribers get the properties encoded when they speak MQTT 5; 3.1.1
// subscribers get the plain publish.
type responder struct {
	server *mqtt.Server
	client *mqtt.Client
	logger *slog.Logger
}

func newResponder(server *mqtt.Server, logger *slog.Logger) *responder {
	return &responder{
		server: server,
		client: server.NewClient(nil, mqtt.LocalListener, responderClientID, true),
		logger: logger,
	}
}

// publish sends v as JSON to topic at qos (0 or 1), with correlation as the
// Correlation Data property when set, and returns the payload (nil when v
// could not be encoded).
func (r *responder) publish(topic string, qos byte, correlation []byte, v any) []byte {
	payload, err := json.Marshal(v)
	if err != nil {
		r.logger.Error("encode response", "topic", topic, "error", err)
		return nil
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		// As in Server.Publish: an inline publish is never acknowledged, but
		// QoS>0 packets must carry an id to pass validation.
		PacketID: uint16(qos),
	}
	if len(correlation) > 0 {
		pk.Properties.CorrelationData = correlation
	}
	if err := r.server.InjectPacket(r.client, pk); err != nil {
		r.logger.Error("publish response", "topic", topic, "error", err)
	}
	return payload
}
