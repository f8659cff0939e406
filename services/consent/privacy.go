package consent

import (
	"context"
	"errors"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// PrivacyView is a user's privacy settings as clients see them: stored ones
// or the defaults.
type PrivacyView struct {
	Presence    string `json:"presence"`
	RequestPush bool   `json:"request_push"`
}

// PrivacyChange is a partial update; nil fields stay as they are.
type PrivacyChange struct {
	Presence    *string
	RequestPush *bool
}

func defaults(uid string) store.Privacy {
	return store.Privacy{UserID: uid, Presence: store.PresenceContacts}
}

// Privacy returns uid's settings (the defaults when never set).
func (s *Service) Privacy(ctx context.Context, uid string) (PrivacyView, error) {
	p, err := s.privacy(ctx, uid)
	if err != nil {
		return PrivacyView{}, err
	}
	return view(p), nil
}

func view(p store.Privacy) PrivacyView {
	return PrivacyView{Presence: p.Presence, RequestPush: p.RequestPush}
}

// SetPrivacy applies ch to uid's settings and returns the result.
func (s *Service) SetPrivacy(ctx context.Context, uid string, ch PrivacyChange) (PrivacyView, error) {
	if ch.Presence != nil {
		switch *ch.Presence {
		case store.PresenceContacts, store.PresenceNobody:
		default:
			return PrivacyView{}, invalid(`presence must be "contacts" or "nobody"`)
		}
	}
	mu := s.lock(uid)
	mu.Lock()
	defer mu.Unlock()
	p, err := s.privacy(ctx, uid)
	if err != nil {
		return PrivacyView{}, err
	}
	if ch.Presence != nil {
		p.Presence = *ch.Presence
	}
	if ch.RequestPush != nil {
		p.RequestPush = *ch.RequestPush
	}
	p.UpdatedAt = s.opts.Now().UTC().Truncate(time.Millisecond)
	err = s.st.PutPrivacy(ctx, p)
	s.forget(uid)
	if err != nil {
		return PrivacyView{}, s.internal(ctx, "put privacy", err)
	}
	return view(p), nil
}

// PresenceHidden reports whether viewer may not see target's presence
// whatever chats they share: the one rule of consent about presence.
// Either blocking the other hides it both ways, a target whose presence
// setting is "nobody" shows it to no one but itself, and a pending message
// request between the two hides it both ways until it is accepted.
func (s *Service) PresenceHidden(ctx context.Context, viewer, target string) (bool, error) {
	if viewer == target {
		return false, nil
	}
	if blocked, err := s.EitherBlocked(ctx, viewer, target); blocked || err != nil {
		return blocked, err
	}
	p, err := s.privacy(ctx, target)
	if err != nil || p.Presence == store.PresenceNobody {
		return err == nil, err
	}
	return s.PendingChat(ctx, chat.DirectChatID(viewer, target))
}

// privacy returns uid's settings from the cache or the store.
func (s *Service) privacy(ctx context.Context, uid string) (store.Privacy, error) {
	u, err := s.user(ctx, uid)
	if err != nil {
		return store.Privacy{}, err
	}
	return u.privacy, nil
}

// loadPrivacy reads uid's settings, the defaults when never set.
func (s *Service) loadPrivacy(ctx context.Context, uid string) (store.Privacy, error) {
	p, err := s.st.Privacy(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return defaults(uid), nil
	}
	if err != nil {
		return store.Privacy{}, s.internal(ctx, "privacy", err)
	}
	return p, nil
}
