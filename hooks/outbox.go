package hooks

import (
	"encoding/json"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Outbox publishes server-originated messages: inbox deliveries and events.
type Outbox struct {
	server  *mqtt.Server
	logger  *slog.Logger
	metrics DeliveryObserver
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
}
