package consent

import (
	"context"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// A 1:1 chat opened by someone the recipient shares no chat with is a
// message request for the recipient until they accept it (Accept) or reply
// (Replied). Its messages are stored and delivered as any other, marked
// "request" in the chat list, pushed only if the recipient allows it
// (privacy request_push), and presence and typing stay hidden between the
// two until then (PresenceHidden via the visibility index, MayHearTyping).

// Relations tells whether two users already share a chat (a group: the
// 1:1 chat is the one being opened): services/visibility.
type Relations interface {
	Related(ctx context.Context, a, b string) (bool, error)
}

// SetRelations wires the visibility index, which itself asks this service
// (so it cannot be given to New).
func (s *Service) SetRelations(r Relations) { s.rel = r }

// Opened is called by the chat's writer before the first message of the
// 1:1 chat from→to is stored: it records the request unless the two
// already share a chat.
func (s *Service) Opened(ctx context.Context, from, to, chatID string) error {
	if from == to {
		return nil
	}
	if s.rel != nil {
		related, err := s.rel.Related(ctx, from, to)
		if err != nil {
			return s.internal(ctx, "related", err)
		}
		if related {
			return nil
		}
	}
	mu := s.lock(to)
	mu.Lock()
	defer mu.Unlock()
	err := s.st.PutRequest(ctx, store.DirectRequest{
		UserID: to, Chat: chatID, From: from, CreatedAt: s.opts.Now().UTC().Truncate(time.Millisecond),
	})
	s.forget(to)
	if err != nil {
		return s.internal(ctx, "put request", err)
	}
	return nil
}

// Pending reports whether chat is a pending request for uid.
func (s *Service) Pending(ctx context.Context, uid, chatID string) (bool, error) {
	u, err := s.user(ctx, uid)
	if err != nil {
		return false, err
	}
	_, ok := u.requests[chatID]
	return ok, nil
}

// PendingChat reports whether the 1:1 chat is a pending request for either
// of its users; false for any other chat.
func (s *Service) PendingChat(ctx context.Context, chatID string) (bool, error) {
	a, b, ok := chat.DirectMembers(chatID)
	if !ok || a == b {
		return false, nil
	}
	for _, uid := range []string{a, b} {
		if p, err := s.Pending(ctx, uid, chatID); p || err != nil {
			return p, err
		}
	}
	return false, nil
}

// Muted reports whether uid gets no push for chat: a pending request,
// unless uid allows pushes for requests.
func (s *Service) Muted(ctx context.Context, uid, chatID string) (bool, error) {
	u, err := s.user(ctx, uid)
	if err != nil {
		return false, err
	}
	_, pending := u.requests[chatID]
	return pending && !u.privacy.RequestPush, nil
}

// Accept accepts uid's request for chat; accepting a chat that is no
// request is a no-op. CodeNotAuthorized for a chat that is not uid's 1:1
// chat.
func (s *Service) Accept(ctx context.Context, uid, chatID string) error {
	a, b, ok := chat.DirectMembers(chatID)
	if !ok || (a != uid && b != uid) {
		return &chat.Error{Code: chat.CodeNotAuthorized, Message: "not one of your 1:1 chats"}
	}
	mu := s.lock(uid)
	mu.Lock()
	defer mu.Unlock()
	// Presence needs no notice: PresenceHidden reads the state forgotten
	// here on its next question.
	_, err := s.st.DeleteRequest(ctx, uid, chatID)
	s.forget(uid)
	if err != nil {
		return s.internal(ctx, "delete request", err)
	}
	return nil
}

// Replied is called on every 1:1 send: replying accepts a request.
func (s *Service) Replied(ctx context.Context, uid, chatID string) error {
	pending, err := s.Pending(ctx, uid, chatID)
	if err != nil || !pending {
		return err
	}
	return s.Accept(ctx, uid, chatID)
}

// MayHearTyping reports whether listener gets typist's typing notices in
// chat: not when listener blocks typist, nor in a 1:1 chat that is still a
// request.
func (s *Service) MayHearTyping(ctx context.Context, listener, typist, chatID string) (bool, error) {
	if blocked, err := s.Blocked(ctx, listener, typist); blocked || err != nil {
		return false, err
	}
	pending, err := s.PendingChat(ctx, chatID)
	return !pending, err
}
