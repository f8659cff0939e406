package chat

import (
	"context"

	"github.com/mqchat/mqchat/store"
)

// Requests keeps message requests (services/consent): a 1:1 chat opened
// by someone the recipient shares no chat with is a request for the
// recipient until they accept or reply. Its messages are stored and
// delivered like any other; the chat list marks the chat ("request") and
// the recipient is not pushed unless they allow it.
type Requests interface {
	// Opened is told, before the first message of the 1:1 chat from→to is
	// stored, that the chat is being opened.
	Opened(ctx context.Context, from, to, chat string) error
	// Replied is told of every 1:1 send: replying accepts a request.
	Replied(ctx context.Context, uid, chat string) error
	// Pending reports whether chat is a pending request for uid.
	Pending(ctx context.Context, uid, chat string) (bool, error)
	// Muted reports whether uid is not pushed for chat.
	Muted(ctx context.Context, uid, chat string) (bool, error)
}

// QuietDeliverer is a Deliverer told which recipients must not be pushed
// (push.Tracker's wrapper); a Deliverer without it pushes no one anyway.
type QuietDeliverer interface {
	DeliverQuiet(recipients, quiet []string, m store.Message)
}

// opened tells Requests of a 1:1 chat's first message, on its writer.
func (s *Service) opened(ctx context.Context, m store.Message) error {
	a, b, ok := DirectMembers(m.Chat)
	if !ok || a == b || s.opts.Requests == nil || m.Type == "system" {
		return nil
	}
	if err := s.opts.Requests.Opened(ctx, m.From, otherOf(m.From, a, b), m.Chat); err != nil {
		return s.storeError(ctx, "open request", err)
	}
	return nil
}

// quiet returns the recipients of m who must not be pushed for it.
func (s *Service) quiet(ctx context.Context, m store.Message, recipients []string) ([]string, error) {
	if s.opts.Requests == nil {
		return nil, nil
	}
	a, b, ok := DirectMembers(m.Chat)
	if !ok || a == b {
		return nil, nil
	}
	other := otherOf(m.From, a, b)
	for _, r := range recipients {
		if r != other {
			continue
		}
		muted, err := s.opts.Requests.Muted(ctx, other, m.Chat)
		if err != nil {
			return nil, s.storeError(ctx, "request state", err)
		}
		if muted {
			return []string{other}, nil
		}
	}
	return nil, nil
}

// replied tells Requests that from sent in the 1:1 chat.
func (s *Service) replied(ctx context.Context, from, chat string) error {
	if s.opts.Requests == nil {
		return nil
	}
	if err := s.opts.Requests.Replied(ctx, from, chat); err != nil {
		return s.storeError(ctx, "accept request", err)
	}
	return nil
}

// pendingFor reports whether chat is a request for uid (the chat list's
// "request" mark).
func (s *Service) pendingFor(ctx context.Context, uid, chat string) (bool, error) {
	if s.opts.Requests == nil {
		return false, nil
	}
	if _, _, ok := DirectMembers(chat); !ok {
		return false, nil
	}
	p, err := s.opts.Requests.Pending(ctx, uid, chat)
	if err != nil {
		return false, s.storeError(ctx, "request state", err)
	}
	return p, nil
}
