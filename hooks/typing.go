package hooks

import (
	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/chat"
)

// TypingChats answers who may type in a chat and who hears it.
type TypingChats interface {
	CanRead(ctx context.Context, uid, chat string) error
	Members(ctx context.Context, chat string) ([]string, error)
}

// TypingConsent answers whether a member may hear the typist in a chat
// (services/consent: not when the member blocks the typist, nor in a 1:1
// chat that is still a message request). The typist is not told: the
// notice is accepted and simply not delivered to that member.
type TypingConsent interface {
	MayHearTyping(ctx context.Context, listener, typist, chat string) (bool, error)
}

// typingInterval is the default rate of typing notices per (user, chat).
const typingInterval = 2 * time.Second

// typingTimeout bounds the membership lookups of one notice: a notice late
// by more than this is worthless anyway.
const typingTimeout = 2 * time.Second

type typingRequest struct {
	Chat string `json:"chat"`
}

// TypingEvent tells a chat's other members that user is typing.
type TypingEvent struct {
	Type string `json:"type"` // "typing"
	Chat string `json:"chat"`
	User string `json:"user"`
}

// typingNotice forwards a typing notice to the chat's other members'
// events topics at QoS 0: it is never stored, and an offline device has no
// use for it later, so it must not wait in session queues. Notices past the
// rate are dropped silently at QoS 0 (what a typing indicator needs) and
// refused with 0x97 at QoS 1.
func (h *Chat) typingNotice(cl *mqtt.Client, uid string, pk packets.Packet) error {
	if h.opts.Typing == nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, notEnabled(pk.TopicName))
	}
	req, err := decodeTyping(pk.Payload)
	if err != nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(typingTimeout, h.opts.RequestTimeout))
	defer cancel()
	// Membership first (free for 1:1 chats, one point read for groups), so
	// a non-member is always refused and only real notices spend tokens.
	if err := h.opts.Typing.CanRead(ctx, uid, req.Chat); err != nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, err)
	}
	if !h.typing.Allow(uid + "\x00" + req.Chat) {
		if pk.FixedHeader.Qos == 0 {
			return packets.CodeSuccessIgnore
		}
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, &chat.Error{
			Code: chat.CodeQuota, Message: "typing notices for this chat come too fast; send one every 2 seconds at most",
		})
	}
	members, err := h.opts.Typing.Members(ctx, req.Chat)
	if err != nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, err)
	}
	hearers := make([]string, 0, len(members))
	for _, m := range members {
		if m == uid {
			continue
		}
		if h.opts.Consent != nil {
			ok, err := h.opts.Consent.MayHearTyping(ctx, m, uid, req.Chat)
			if err != nil {
				return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, err)
			}
			if !ok {
				continue
			}
		}
		hearers = append(hearers, m)
	}
	ev := TypingEvent{Type: "typing", Chat: req.Chat, User: uid}
	for _, m := range hearers {
		payload := h.resp.publish(EventsTopic(m), 0, nil, ev)
		if r := h.opts.Events.relay; r != nil && payload != nil {
			r.Relay(m, KindEvents, 0, payload) // hearers connected to other nodes
		}
	}
	return packets.CodeSuccessIgnore
}

// decodeTyping parses and checks a typing notice.
func decodeTyping(payload []byte) (typingRequest, error) {
	var req typingRequest
	if err := decodeRequest(payload, &req); err != nil {
		return typingRequest{}, err
	}
	if req.Chat == "" {
		return req, invalidRequest("chat", "chat is required")
	}
	return req, nil
}
