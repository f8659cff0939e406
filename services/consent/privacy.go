package consent

import (
	"context"
	"errors"
	"time"

	"github.com/mqchat/mqchat/store"
)

// PrivacyView is a user's privacy settings as clients see them: stored ones
// or the defaults.
type PrivacyView struct {
	Presence string `json:"presence"`
}

// PrivacyChange is a partial update; nil fields stay as they are.
type PrivacyChange struct {
	Presence *string
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
	return PrivacyView{Presence: p.Presence}, nil
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
	p.UpdatedAt = s.opts.Now().UTC().Truncate(time.Millisecond)
	err = s.st.PutPrivacy(ctx, p)
	s.forget(uid)
	if err != nil {
		return PrivacyView{}, s.internal(ctx, "put privacy", err)
	}
	return PrivacyView{Presence: p.Presence}, nil
}

// PresenceHidden reports whether viewer may not see target's presence
// whatever chats they share: the one rule of consent about presence.
// Either blocking the other hides it both ways, and a target whose
// presence setting is "nobody" shows it to no one but itself.
func (s *Service) PresenceHidden(ctx context.Context, viewer, target string) (bool, error) {
	if viewer == target {
		return false, nil
	}
	if blocked, err := s.EitherBlocked(ctx, viewer, target); blocked || err != nil {
		return blocked, err
	}
	p, err := s.privacy(ctx, target)
	if err != nil {
		return false, err
	}
	return p.Presence == store.PresenceNobody, nil
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
