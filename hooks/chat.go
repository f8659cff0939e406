package hooks

import (
	"context"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/ratelimit"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/devicemsg"
)

// Sender is the chat pipeline as the Chat hook uses it: a send is queued
// in publish order and wait reports when it is durable (chat.Service).
type Sender interface {
	QueuePayload(ctx context.Context, from string, payload []byte) (chat.Envelope, func() (chat.Result, error), error)
}

// RejectObserver counts publishes refused before they reach the pipeline.
type RejectObserver interface{ ObserveReject(code chat.Code) }

// Limiter rate-limits by key.
type Limiter interface{ Allow(key string) bool }

// ChatOptions configures the Chat hook.
type ChatOptions struct {
	Sender      Sender
	Events      *Outbox
	Logger      *slog.Logger
	Metrics     RejectObserver
	SendTimeout time.Duration // bound on storing one send; 0 = 10s
	// SendWindow bounds a connection's sends waiting for their commit;
	// past it the connection's socket is not read. It must not exceed the
	// broker's receive maximum (mochi disconnects a client whose receive
	// quota runs out), so chatd passes mqtt.receive_maximum. 0 = 64.
	SendWindow int

	// Handlers of the other request topics (groupops.go, sync.go,
	// receipts.go, typing.go). A nil one refuses its topic with
	// not_authorized, as before the topic existed.
	Groups   GroupOps     // users/{uid}/groups
	Sync     SyncSource   // users/{uid}/sync
	Receipts ReadMarker   // users/{uid}/receipts
	Typing   TypingChats  // users/{uid}/typing
	Keys     KeyDirectory // users/{uid}/keys
	// Consent, when set, decides which members hear a typing notice; nil =
	// every other member.
	Consent TypingConsent
	// Server is needed by Sync and Keys (answers on an MQTT 5 Response
	// Topic carry Correlation Data) and Typing (notices go out at QoS 0):
	// Outbox cannot publish either. Without it all three stay disabled.
	Server *mqtt.Server
	// TypingLimiter takes one token per typing notice, keyed by user and
	// chat; nil = one per 2 seconds.
	TypingLimiter  Limiter
	RequestTimeout time.Duration // bound on one groups, sync, receipts or keys request; 0 = 10s
	// Devices takes sends whose envelope has to_device (device messages);
	// nil refuses them as invalid chat envelopes.
	Devices DeviceSender
}

// DeviceSender stores device messages (services/devicemsg).
type DeviceSender interface {
	DecodeEnvelope(payload []byte) (devicemsg.Envelope, error)
	Send(ctx context.Context, from string, env devicemsg.Envelope) (devicemsg.Result, error)
}

const defaultSendWindow = 64

// Chat turns publishes on users/{uid}/send into stored chat messages,
// answers the other request topics (groups, sync, receipts, typing) and
// refuses every other client publish inside the chat namespace.
//
// The PUBACK mochi sends after OnPublish returns therefore means "stored"
// (or "handled", for requests). Handled and refused publishes are consumed
// with CodeSuccessIgnore, never routed: for 3.1.1 clients, QoS 0 and
// non-Code errors mochi would otherwise publish the original packet.
// ErrRejectPacket, which suppresses mochi's PUBACK, is used only for
// sends, whose PUBACK the hook writes itself once the message is durable
// (send, pipeline.go).
type Chat struct {
	mqtt.HookBase
	opts   ChatOptions
	resp   *responder
	typing Limiter
	pipes  pipelines
}

// NewChat returns the hook.
func NewChat(opts ChatOptions) *Chat {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	h := &Chat{opts: opts, typing: opts.TypingLimiter}
	h.pipes.window = opts.SendWindow
	if h.pipes.window <= 0 {
		h.pipes.window = defaultSendWindow
	}
	if opts.Server != nil {
		h.resp = newResponder(opts.Server, opts.Logger)
	} else {
		h.opts.Sync, h.opts.Typing, h.opts.Keys = nil, nil, nil
	}
	if h.typing == nil {
		h.typing = ratelimit.NewEvery(typingInterval, 1)
	}
	return h
}

func (h *Chat) ID() string { return "mqchat-chat" }

func (h *Chat) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnDisconnect }

func (h *Chat) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.pipes.forget(cl) }

// ErrorEvent tells a sender why its publish was refused; 3.1.1 clients have
// no other way to learn it. It carries the id the request named, when that
// id was valid: a send's cmid, a group operation's op_id (only when the
// request is too broken for a group_op result), a sync request's
// request_id.
type ErrorEvent struct {
	Type       string `json:"type"` // "error"
	CMID       string `json:"cmid,omitempty"`
	OpID       string `json:"op_id,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	Code       string `json:"code"`
	ReasonCode byte   `json:"reason_code"`
	Message    string `json:"message"`
	// Field names the request field at fault, as in REST error answers.
	Field string `json:"field,omitempty"`
	Topic string `json:"topic"`
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
	return pk, h.inOrder(cl, pk, h.handle(cl, pk))
}

// inOrder queues the PUBACK of a publish answered at once (a request, a
// refusal) behind the connection's sends still waiting for their commit,
// so PUBACKs keep the order of the PUBLISHes; with none waiting mochi
// sends it as usual.
func (h *Chat) inOrder(cl *mqtt.Client, pk packets.Packet, err error) error {
	rc, ok := err.(packets.Code)
	if !ok || err == packets.ErrRejectPacket || pk.FixedHeader.Qos == 0 || !h.pipes.busy(cl) {
		return err
	}
	if rc == packets.CodeSuccessIgnore {
		rc = packets.CodeSuccess
	}
	cl.State.Inflight.DecreaseReceiveQuota()
	h.pipes.push(cl, pendingSend{id: pk.PacketID, rc: func() packets.Code { return rc }})
	return packets.ErrRejectPacket
}

// handle answers a client publish: the error is what OnPublish returns
// for it.
func (h *Chat) handle(cl *mqtt.Client, pk packets.Packet) error {
	uid := string(cl.Properties.Username)
	if !writeAccess(uid, pk.TopicName) {
		if h.opts.Metrics != nil {
			h.opts.Metrics.ObserveReject(chat.CodeNotAuthorized) // the pipeline counts its own refusals
		}
		return h.reject(cl, uid, pk, "", notAllowed(pk.TopicName))
	}
	if uid == "" {
		return nil // anonymous plain-broker traffic outside the chat namespace
	}
	_, leaf, _ := splitUserTopic(pk.TopicName)
	switch leaf {
	case LeafGroups:
		return h.groupOp(cl, uid, pk)
	case LeafSync:
		return h.answerSync(cl, uid, pk)
	case LeafReceipts:
		return h.receipt(cl, uid, pk)
	case LeafTyping:
		return h.typingNotice(cl, uid, pk)
	case LeafKeys:
		return h.keysRequest(cl, uid, pk)
	case LeafSend:
		return h.send(cl, uid, pk)
	default:
		// writeAccess admits only request leaves, so this is one added
		// there without a handler here: refuse it rather than store it as
		// a send.
		return h.reject(cl, uid, pk, "", notAllowed(pk.TopicName))
	}
}

func notAllowed(topic string) error {
	return &chat.Error{Code: chat.CodeNotAuthorized, Message: "publishing to " + topic + " is not allowed"}
}

// send queues a send envelope on the chat pipeline; its PUBACK follows
// the commit, written by the connection's send queue (pipeline.go) in
// arrival order, so the read loop goes on reading while earlier sends wait
// for their fsync.
func (h *Chat) send(cl *mqtt.Client, uid string, pk packets.Packet) error {
	if h.opts.Devices != nil && devicemsg.IsDeviceEnvelope(pk.Payload) {
		return h.deviceSend(cl, uid, pk)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.SendTimeout)
	env, wait, err := h.opts.Sender.QueuePayload(ctx, uid, pk.Payload)
	if err != nil {
		cancel()
		return h.reject(cl, uid, pk, env.CMID, err)
	}
	s := pendingSend{end: cancel, rc: func() packets.Code {
		err := h.sent(cl, uid, pk, env, wait)
		if err == packets.CodeSuccessIgnore {
			return packets.CodeSuccess
		}
		if rc, ok := err.(packets.Code); ok {
			return rc
		}
		// Never acknowledge success for an outcome we cannot name.
		return packets.ErrUnspecifiedError
	}}
	if pk.FixedHeader.Qos > 0 {
		s.id = pk.PacketID
		cl.State.Inflight.DecreaseReceiveQuota()
	}
	h.pipes.push(cl, s)
	return packets.ErrRejectPacket // consumed; the PUBACK, if any, is the queue's to send
}

// deviceSend stores a device message (an envelope with to_device) from the
// client's own device. It waits for the store in the read loop, as a
// 3.1.1 chat send does: device messages are rare next to chat messages
// and are not pipelined.
func (h *Chat) deviceSend(cl *mqtt.Client, uid string, pk packets.Packet) error {
	env, err := h.opts.Devices.DecodeEnvelope(pk.Payload)
	if err != nil {
		return h.reject(cl, uid, pk, env.CMID, err)
	}
	own, _ := clientDevice(uid, cl.ID) // Auth admits only {uid}/{device} ids
	if env.FromDevice != "" && env.FromDevice != own {
		return h.reject(cl, uid, pk, env.CMID, chat.Invalid("from_device", "from_device must be the sending device, "+own))
	}
	env.FromDevice = own
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.SendTimeout)
	defer cancel()
	if _, err := h.opts.Devices.Send(ctx, uid, env); err != nil {
		return h.reject(cl, uid, pk, env.CMID, err)
	}
	return packets.CodeSuccessIgnore
}

// sent waits for a queued send and answers it like OnPublish would: the
// error is the PUBACK's reason code or CodeSuccessIgnore.
func (h *Chat) sent(cl *mqtt.Client, uid string, pk packets.Packet, env chat.Envelope, wait func() (chat.Result, error)) error {
	res, err := wait()
	if err != nil {
		return h.reject(cl, uid, pk, env.CMID, err)
	}
	if res.Duplicate {
		h.opts.Events.Event(uid, SentEvent{
			Type: "sent", CMID: env.CMID, Chat: res.Message.Chat, Seq: res.Message.Seq,
			ID: ids.Format(res.Message.ID), Duplicate: true,
		})
	}
	return packets.CodeSuccessIgnore
}

// reject answers a refused publish: a reason code in the PUBACK for v5 QoS>0
// publishes, an error event for every client that has an events topic, and
// the packet consumed either way.
func (h *Chat) reject(cl *mqtt.Client, uid string, pk packets.Packet, cmid string, err error) error {
	if !chat.ValidCMID(cmid) {
		cmid = "" // never echo back what failed validation
	}
	return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{CMID: cmid}, err)
}

// refuse is reject for any request: ev carries the request's (valid) id,
// err the code and client-facing message, and the event goes where the
// request's answer would have gone.
func (h *Chat) refuse(cl *mqtt.Client, uid string, pk packets.Packet, to replyTo, ev ErrorEvent, err error) error {
	code, msg := chat.CodeOf(err), chat.MessageOf(err)
	rc := reasonCode(code)
	h.opts.Logger.Debug("publish refused", "client", cl.ID, "topic", pk.TopicName, "code", code, "message", msg)
	if uid != "" {
		ev.Type, ev.Code, ev.ReasonCode, ev.Message, ev.Topic = "error", string(code), rc.Code, msg, pk.TopicName
		ev.Field = chat.FieldOf(err)
		h.answer(uid, to, ev)
	}
	return ack(cl, pk, rc)
}

// ack is what OnPublish returns for a handled request: rc in the PUBACK of
// a v5 QoS>0 publish when it is an error, the packet consumed either way.
func ack(cl *mqtt.Client, pk packets.Packet, rc packets.Code) error {
	if rc.Code >= packets.ErrUnspecifiedError.Code && cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
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
	case chat.CodeNotAuthorized, chat.CodeUnknownRecipient, chat.CodeNotFound, chat.CodeUnauthenticated:
		return packets.ErrNotAuthorized
	case chat.CodeQuota:
		return packets.ErrQuotaExceeded
	case chat.CodeRateLimited:
		return packets.ErrMessageRateTooHigh
	case chat.CodeConflict: // groups: valid, but the group's state forbids it
		return packets.ErrImplementationSpecificError
	case chat.CodeCMIDReused: // well formed, but its cmid is spent on other content
		return packets.ErrImplementationSpecificError
	case chat.CodeUnavailable:
		return packets.ErrServerBusy
	default:
		return packets.ErrUnspecifiedError
	}
}
