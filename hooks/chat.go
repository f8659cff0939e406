package hooks

import (
	"context"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
)

// Sender is the chat pipeline as the Chat hook uses it.
type Sender interface {
	SendPayload(ctx context.Context, from string, payload []byte) (chat.Result, chat.Envelope, error)
}

// RejectObserver counts publishes refused before they reach the pipeline.
type RejectObserver interface{ ObserveReject(code chat.Code) }

// ChatOptions configures the Chat hook.
type ChatOptions struct {
	Sender      Sender
	Events      *Outbox
	Logger      *slog.Logger
	Metrics     RejectObserver
	SendTimeout time.Duration // bound on storing one send; 0 = 10s
}

// Chat turns publishes on users/{uid}/send into stored chat messages and
// refuses every other client publish inside the chat namespace.
//
// The PUBACK mochi sends after OnPublish returns therefore means "stored".
// Handled and refused publishes are consumed with CodeSuccessIgnore, never
// routed: for 3.1.1 clients, QoS 0 and non-Code errors mochi would otherwise
// publish the original packet. ErrRejectPacket is never used: it suppresses
// the PUBACK and leaves the client waiting.
type Chat struct {
	mqtt.HookBase
	opts ChatOptions
}

// NewChat returns the hook.
func NewChat(opts ChatOptions) *Chat {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	return &Chat{opts: opts}
}

func (h *Chat) ID() string { return "mqchat-chat" }

func (h *Chat) Provides(b byte) bool { return b == mqtt.OnPublish }

// ErrorEvent tells a sender why its publish was refused; 3.1.1 clients have
// no other way to learn it.
type ErrorEvent struct {
	Type       string `json:"type"` // "error"
	CMID       string `json:"cmid,omitempty"`
	Code       string `json:"code"`
	ReasonCode byte   `json:"reason_code"`
	Message    string `json:"message"`
	Topic      string `json:"topic"`
}

// SentEvent confirms a retried send that was already stored: no new inbox
// copy is published for it, so this is how the sender learns its seq.
type SentEvent struct {
	Type      string `json:"type"` // "sent"
	CMID      string `json:"cmid"`
	Chat      string `json:"chat"`
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

func (h *Chat) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the server's own fan-out and events
	}
	uid := string(cl.Properties.Username)
	if !writeAccess(uid, pk.TopicName) {
		if h.opts.Metrics != nil {
			h.opts.Metrics.ObserveReject(chat.CodeNotAuthorized) // the pipeline counts its own refusals
		}
		return pk, h.reject(cl, uid, pk, "", chat.CodeNotAuthorized, "publishing to "+pk.TopicName+" is not allowed")
	}
	if uid == "" {
		return pk, nil // anonymous plain-broker traffic outside the chat namespace
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.SendTimeout)
	defer cancel()
	res, env, err := h.opts.Sender.SendPayload(ctx, uid, pk.Payload)
	if err != nil {
		return pk, h.reject(cl, uid, pk, env.CMID, chat.CodeOf(err), chat.MessageOf(err))
	}
	if res.Duplicate {
		h.opts.Events.Event(uid, SentEvent{
			Type: "sent", CMID: env.CMID, Chat: res.Message.Chat, Seq: res.Message.Seq,
			ID: ids.Format(res.Message.ID), Duplicate: true,
		})
	}
	return pk, packets.CodeSuccessIgnore
}

// reject answers a refused publish: a reason code in the PUBACK for v5 QoS>0
// publishes, an error event for every client that has an events topic, and
// the packet consumed either way.
func (h *Chat) reject(cl *mqtt.Client, uid string, pk packets.Packet, cmid string, code chat.Code, msg string) error {
	rc := reasonCode(code)
	h.opts.Logger.Debug("publish refused", "client", cl.ID, "topic", pk.TopicName, "code", code, "message", msg)
	if !chat.ValidCMID(cmid) {
		cmid = "" // never echo back what failed validation
	}
	if uid != "" {
		h.opts.Events.Event(uid, ErrorEvent{
			Type: "error", CMID: cmid, Code: string(code), ReasonCode: rc.Code, Message: msg, Topic: pk.TopicName,
		})
	}
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return rc
	}
	return packets.CodeSuccessIgnore
}

func reasonCode(code chat.Code) packets.Code {
	switch code {
	case chat.CodeInvalid:
		return packets.ErrPayloadFormatInvalid
	case chat.CodeTooLarge:
		return packets.ErrPacketTooLarge
	case chat.CodeNotAuthorized, chat.CodeUnknownRecipient, chat.CodeNotFound:
		return packets.ErrNotAuthorized
	case chat.CodeQuota:
		return packets.ErrQuotaExceeded
	case chat.CodeUnavailable:
		return packets.ErrServerBusy
	default:
		return packets.ErrUnspecifiedError
	}
}
