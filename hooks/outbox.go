package hooks

import (
	"encoding/json"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Outbox publishes server-originated messages: inbox deliveries and events.
// In a cluster it also relays each of them to the other nodes, which
// deliver to the user's sessions there (DeliverLocal).
type Outbox struct {
	server  *mqtt.Server
	logger  *slog.Logger
	metrics DeliveryObserver
	relay   Relay
}

// Relay carries deliveries to a user's sessions on other nodes (the
// cluster's per-user subjects); kind is KindInbox or KindEvents.
// RelayDevice carries a device message (KindDevice) to the node holding
// that device.
type Relay interface {
	Relay(uid, kind string, qos byte, payload []byte)
	RelayDevice(uid, device string, payload []byte)
}

// The kinds of relayed deliveries, each naming a user topic.
const (
	KindInbox  = LeafInbox
	KindEvents = LeafEvents
	KindDevice = "device" // users/{uid}/devices/{device}/inbox
)

// SetRelay makes the outbox relay every delivery through r as well.
// Call it before the broker starts.
func (o *Outbox) SetRelay(r Relay) { o.relay = r }

// DeliverLocal publishes a delivery relayed by another node to this node's
// sessions of uid; device names the device of a KindDevice delivery. An
// unknown kind is dropped: the subject named a topic this release does not
// have.
func (o *Outbox) DeliverLocal(uid, kind, device string, qos byte, payload []byte) {
	var topic string
	switch kind {
	case KindInbox:
		topic = InboxTopic(uid)
	case KindEvents:
		topic = EventsTopic(uid)
	case KindDevice:
		if !ids.ValidDeviceID(device) {
			o.logger.Warn("relayed device message without a valid device dropped", "user", uid)
			return
		}
		topic = DeviceInboxTopic(uid, device)
	default:
		o.logger.Warn("relayed delivery of an unknown kind dropped", "user", uid, "kind", kind)
		return
	}
	if err := o.server.Publish(topic, payload, false, min(qos, 1)); err != nil {
		o.logger.Error("publish relayed delivery", "user", uid, "kind", kind, "error", err)
	}
}

// DeliveryObserver counts inbox deliveries.
type DeliveryObserver interface{ ObserveDeliveries(n int) }

// NewOutbox returns an outbox publishing through server's inline client.
func NewOutbox(server *mqtt.Server, logger *slog.Logger, metrics DeliveryObserver) *Outbox {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Outbox{server: server, logger: logger, metrics: metrics}
}

// Deliver publishes a stored message to each recipient's inbox at QoS 1.
func (o *Outbox) Deliver(recipients []string, m store.Message) {
	payload, err := json.Marshal(chat.View(m))
	if err != nil {
		o.logger.Error("encode inbox message", "chat", m.Chat, "seq", m.Seq, "error", err)
		return
	}
	for _, r := range recipients {
		if err := o.server.Publish(InboxTopic(r), payload, false, 1); err != nil {
			o.logger.Error("publish inbox message", "user", r, "chat", m.Chat, "seq", m.Seq, "error", err)
		}
		if o.relay != nil {
			o.relay.Relay(r, KindInbox, 1, payload)
		}
	}
	if o.metrics != nil {
		o.metrics.ObserveDeliveries(len(recipients))
	}
}

// Event publishes v to uid's events topic at QoS 1.
func (o *Outbox) Event(uid string, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		o.logger.Error("encode event", "user", uid, "error", err)
		return
	}
	if err := o.server.Publish(EventsTopic(uid), payload, false, 1); err != nil {
		o.logger.Error("publish event", "user", uid, "error", err)
	}
	if o.relay != nil {
		o.relay.Relay(uid, KindEvents, 1, payload)
	}
}

// DeliverDevice publishes a stored device message to the device's inbox at
// QoS 1, here and, in a cluster, on the node holding the device. Only that
// device may subscribe to the topic, so it reaches no one else.
func (o *Outbox) DeliverDevice(uid, device string, payload []byte) {
	if err := o.server.Publish(DeviceInboxTopic(uid, device), payload, false, 1); err != nil {
		o.logger.Error("publish device message", "user", uid, "device", device, "error", err)
	}
	if o.relay != nil {
		o.relay.RelayDevice(uid, device, payload)
	}
}
