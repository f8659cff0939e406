// Package devicemsg is per-device store-and-forward: messages addressed to
// one device of a user (end-to-end encryption key exchange and per-device
// ciphertexts travel on these), kept until that device acknowledges them.
// Bodies are opaque JSON values the server never inspects.
package devicemsg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/jsonerr"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is the slice of the storage contract the service uses.
type Store interface {
	store.DeviceMessages
	UserByID(ctx context.Context, id string) (store.User, error)
}

// Blocks answers whether a user blocks another (services/consent).
type Blocks interface {
	Blocked(ctx context.Context, blocker, other string) (bool, error)
}

// Deliverer publishes a stored message to the device's inbox topic, on
// whichever node the device is connected to (hooks.Outbox).
type Deliverer interface {
	DeliverDevice(uid, device string, payload []byte)
}

// Limiter rate-limits sends per user: the chat service's own limiter, so
// chat and device messages share one budget.
type Limiter interface{ Allow(key string) bool }

// Metrics receives the service's observations.
type Metrics interface {
	// ObserveDeviceMessage counts a send by result: stored, duplicate or
	// refused.
	ObserveDeviceMessage(result string)
	ObserveDeviceMessagesAcked(n int)
}

// Options configures the service.
type Options struct {
	// MaxBodyBytes bounds a body (limits.max_message_bytes); default 64 KiB.
	MaxBodyBytes int
	// MaxPending bounds the messages waiting for one device
	// (limits.device_messages_pending); 0 = unbounded.
	MaxPending int
	Limiter    Limiter // nil = unlimited
	Blocks     Blocks  // nil = nobody blocks anybody
	Metrics    Metrics
	Logger     *slog.Logger
	// StoreTimeout bounds one background acknowledgement write; 0 = 10s.
	StoreTimeout time.Duration
	Now          func() time.Time
}

// Address names one device of one user.
type Address struct {
	User   string `json:"user"`
	Device string `json:"device"`
}

// Envelope is a device-message send, over REST or on users/{uid}/send.
type Envelope struct {
	ToDevice *Address        `json:"to_device"`
	CMID     string          `json:"cmid"`
	Body     json.RawMessage `json:"body"`
	// FromDevice names the sending device; over MQTT it is the client
	// id's device and may only repeat it.
	FromDevice string `json:"from_device,omitempty"`
	// To is refused: an envelope is either a chat send or a device one.
	To *string `json:"to,omitempty"`
}

// View is a device message as its device sees it, on
// users/{uid}/devices/{device}/inbox and in GET …/messages. Seq is encoded
// first: the Delivery hook reads it from the start of the payload.
type View struct {
	Seq        uint64          `json:"seq"`
	From       string          `json:"from"`
	FromDevice string          `json:"from_device,omitempty"`
	CMID       string          `json:"cmid"`
	Body       json.RawMessage `json:"body"`
	SentAt     string          `json:"sent_at"`
	ToDevice   string          `json:"to_device"`
}

// ViewOf renders a stored message for its device.
func ViewOf(m store.DeviceMessage) View {
	body := json.RawMessage(m.Body)
	if len(body) == 0 {
		body = json.RawMessage("null")
	}
	return View{
		Seq: m.Seq, From: m.From, FromDevice: m.FromDevice, CMID: m.CMID, Body: body,
		SentAt: m.SentAt.UTC().Format(chat.SentAtLayout), ToDevice: m.ToDevice,
	}
}

// Result is the outcome of an accepted send.
type Result struct {
	To        Address
	Seq       uint64
	SentAt    time.Time
	Duplicate bool
}

// Service sends, lists and acknowledges device messages.
type Service struct {
	st      Store
	deliver Deliverer
	opts    Options
	acks    *acker
}

// New returns the service; Close stops its acknowledgement writer.
func New(st Store, d Deliverer, opts Options) *Service {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{st: st, deliver: d, opts: opts}
	s.acks = newAcker(s)
	return s
}

// Close writes the acknowledgements still queued and stops.
func (s *Service) Close() { s.acks.close() }

// envelopeSlack is what a send payload may hold beyond its body: the
// address, the cmid and the JSON around them.
const envelopeSlack = 4 << 10

// IsDeviceEnvelope reports whether a send payload is a device message:
// a JSON object with a top-level "to_device" key. Chat sends pay one
// substring scan; only payloads that mention the key are decoded here.
func IsDeviceEnvelope(payload []byte) bool {
	if !bytes.Contains(payload, []byte(`"to_device"`)) {
		return false
	}
	// The first JSON value only: data after it is DecodeEnvelope's to refuse.
	var top map[string]json.RawMessage
	if json.NewDecoder(bytes.NewReader(payload)).Decode(&top) != nil {
		return false // refused as a chat send, with the decoder's reason
	}
	_, ok := top["to_device"]
	return ok
}

// DecodeEnvelope parses a raw send payload as a device message; unknown
// fields are refused as chat envelopes refuse them.
func (s *Service) DecodeEnvelope(payload []byte) (Envelope, error) {
	var env Envelope
	if len(payload) > s.opts.MaxBodyBytes+envelopeSlack {
		return env, refusal(chat.CodeTooLarge, fmt.Sprintf("payload is %d bytes, the body limit is %d", len(payload), s.opts.MaxBodyBytes))
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		field, msg := jsonerr.Explain(err)
		return env, chat.Invalid(field, "not a valid device message envelope: "+msg)
	}
	if len(bytes.TrimSpace(payload[dec.InputOffset():])) != 0 {
		return env, refusal(chat.CodeInvalid, "payload has data after the envelope")
	}
	return env, nil
}

// Send validates env and stores it for its device, then publishes it
// there. from is the sending user, fromDevice its device ("" when
// unknown: REST without from_device).
func (s *Service) Send(ctx context.Context, from string, env Envelope) (Result, error) {
	res, err := s.send(ctx, from, env)
	switch {
	case err != nil:
		s.opts.Metrics.ObserveDeviceMessage("refused")
	case res.Duplicate:
		s.opts.Metrics.ObserveDeviceMessage("duplicate")
	case res.Seq == 0:
		s.opts.Metrics.ObserveDeviceMessage("refused") // dropped: the recipient blocks the sender
	default:
		s.opts.Metrics.ObserveDeviceMessage("stored")
	}
	return res, err
}

func (s *Service) send(ctx context.Context, from string, env Envelope) (Result, error) {
	if s.opts.Limiter != nil && !s.opts.Limiter.Allow(from) {
		return Result{}, refusal(chat.CodeQuota, "sending too fast, slow down and retry with the same cmid")
	}
	if err := s.validate(&env); err != nil {
		return Result{}, err
	}
	to := *env.ToDevice
	if err := s.userExists(ctx, to.User); err != nil {
		return Result{}, err
	}
	if to.User != from && s.opts.Blocks != nil {
		blocked, err := s.opts.Blocks.Blocked(ctx, to.User, from)
		if err != nil {
			return Result{}, s.storeError("blocks", err)
		}
		if blocked {
			// Accepted and dropped, as a blocked 1:1 send is never
			// delivered: an error would tell the sender it is blocked.
			return Result{To: to, SentAt: s.opts.Now().UTC().Truncate(time.Millisecond)}, nil
		}
	}
	m := store.DeviceMessage{
		ToUser: to.User, ToDevice: to.Device, From: from, FromDevice: env.FromDevice,
		CMID: env.CMID, Body: []byte(env.Body),
	}
	stored, dup, err := s.st.PutDeviceMessage(ctx, m, s.opts.MaxPending)
	switch {
	case errors.Is(err, store.ErrQuota):
		return Result{}, refusal(chat.CodeQuota, fmt.Sprintf("device %s of %s has %d messages waiting, the limit", to.Device, to.User, s.opts.MaxPending))
	case err != nil:
		return Result{}, s.storeError("store device message", err)
	}
	res := Result{To: Address{User: stored.ToUser, Device: stored.ToDevice}, Seq: stored.Seq, SentAt: stored.SentAt, Duplicate: dup}
	if dup {
		if res.To != to {
			// Answering with the first message would tell the client its
			// new one was sent.
			return Result{}, &chat.Error{Code: chat.CodeCMIDReused, Message: "cmid " + env.CMID + " already names a message to another device: use a new cmid"}
		}
		return res, nil // delivered when first stored
	}
	payload, err := json.Marshal(ViewOf(stored))
	if err != nil {
		s.opts.Logger.Error("encode device message", "user", to.User, "device", to.Device, "seq", stored.Seq, "error", err)
		return res, nil // stored: the device gets it on its next subscribe
	}
	s.deliver.DeliverDevice(to.User, to.Device, payload)
	return res, nil
}

func (s *Service) validate(env *Envelope) error {
	if env.To != nil {
		return chat.Invalid("to_device", "an envelope has either to (a chat message) or to_device (a device message), not both")
	}
	if env.ToDevice == nil {
		return chat.Invalid("to_device", "to_device is required")
	}
	if !ids.ValidUserID(env.ToDevice.User) {
		return refusal(chat.CodeUnknownRecipient, "no such user: "+env.ToDevice.User)
	}
	if !ids.ValidDeviceID(env.ToDevice.Device) {
		return chat.Invalid("to_device.device", "to_device.device is not a valid device id")
	}
	if env.FromDevice != "" && !ids.ValidDeviceID(env.FromDevice) {
		return chat.Invalid("from_device", "from_device is not a valid device id")
	}
	if !chat.ValidCMID(env.CMID) {
		return chat.Invalid("cmid", "cmid must be 1 to 64 printable ASCII characters without spaces")
	}
	body, err := chat.CheckBody(env.Body)
	if err != nil {
		return err
	}
	if len(body) > s.opts.MaxBodyBytes {
		return refusal(chat.CodeTooLarge, fmt.Sprintf("body is %d bytes, the limit is %d", len(body), s.opts.MaxBodyBytes))
	}
	env.Body = body
	return nil
}

// userExists checks the recipient: an account that exists and is not
// deleted.
func (s *Service) userExists(ctx context.Context, uid string) error {
	u, err := s.st.UserByID(ctx, uid)
	if err == nil && u.Deleted() {
		err = store.ErrNotFound
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refusal(chat.CodeUnknownRecipient, "no such user: "+uid)
	case err != nil:
		return s.storeError("look up recipient", err)
	}
	return nil
}

// MaxPage bounds one page of pending messages.
const MaxPage = 200

// Pending returns the device's messages with seq > after, oldest first, at
// most limit (1..MaxPage).
func (s *Service) Pending(ctx context.Context, uid, device string, after uint64, limit int) ([]store.DeviceMessage, error) {
	if !ids.ValidDeviceID(device) {
		return nil, chat.Invalid("device_id", "device_id is not a valid device id")
	}
	limit = min(max(limit, 1), MaxPage)
	msgs, err := s.st.PendingDeviceMessages(ctx, uid, device, after, limit)
	if err != nil {
		return nil, s.storeError("pending device messages", err)
	}
	return msgs, nil
}

// Ack deletes the device's messages with seq <= upTo and reports how many
// went.
func (s *Service) Ack(ctx context.Context, uid, device string, upTo uint64) (int, error) {
	if !ids.ValidDeviceID(device) {
		return 0, chat.Invalid("device_id", "device_id is not a valid device id")
	}
	n, err := s.st.AckDeviceMessages(ctx, uid, device, upTo)
	if err != nil {
		return 0, s.storeError("ack device messages", err)
	}
	s.opts.Metrics.ObserveDeviceMessagesAcked(n)
	return n, nil
}

func (s *Service) storeError(op string, err error) error {
	s.opts.Logger.Error("device messages: store failed", "op", op, "error", err)
	return &chat.Error{Code: chat.CodeUnavailable, Message: "temporarily unavailable, retry with the same cmid", Err: fmt.Errorf("devicemsg: %s: %w", op, err)}
}

func refusal(code chat.Code, msg string) error { return &chat.Error{Code: code, Message: msg} }

type nopMetrics struct{}

func (nopMetrics) ObserveDeviceMessage(string)    {}
func (nopMetrics) ObserveDeviceMessagesAcked(int) {}
