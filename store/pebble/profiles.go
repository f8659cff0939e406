package pebble

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// A profile is "pf/{uid}" → display name, about, avatar, discoverable,
// updated_at.
const prefixProfile = "pf/"

const profileV1 = 1

func profileKey(uid string) []byte { return append([]byte(prefixProfile), uid...) }

// PutProfile holds userMu so the user's existence check and the write are
// one step against anything else that writes accounts.
func (s *Store) PutProfile(ctx context.Context, p store.Profile) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put profile: %w", err)
	}
	defer s.mu.RUnlock()
	s.userMu.Lock()
	defer s.userMu.Unlock()
	ok, err := s.exists(userIDKey(p.UserID))
	if err != nil {
		return fmt.Errorf("pebble: put profile: %w", err)
	}
	if !ok {
		return fmt.Errorf("pebble: put profile %q: %w", p.UserID, store.ErrNotFound)
	}
	if err := s.db.Set(profileKey(p.UserID), encodeProfile(&p), pebble.Sync); err != nil {
		return fmt.Errorf("pebble: put profile: %w", err)
	}
	return nil
}

func (s *Store) Profile(ctx context.Context, uid string) (store.Profile, error) {
	if err := s.begin(ctx); err != nil {
		return store.Profile{}, fmt.Errorf("pebble: profile: %w", err)
	}
	defer s.mu.RUnlock()
	v, err := s.get(profileKey(uid))
	if err != nil {
		return store.Profile{}, fmt.Errorf("pebble: profile %q: %w", uid, err)
	}
	p, err := decodeProfile(uid, v)
	if err != nil {
		return store.Profile{}, fmt.Errorf("pebble: profile %q: %w", uid, err)
	}
	return p, nil
}

func encodeProfile(p *store.Profile) []byte {
	b := make([]byte, 0, 2+len(p.DisplayName)+len(p.About)+len(p.Avatar)+16)
	b = append(b, profileV1)
	b = appendString(b, p.DisplayName)
	b = appendString(b, p.About)
	b = appendString(b, p.Avatar)
	disc := byte(0)
	if p.Discoverable {
		disc = 1
	}
	b = append(b, disc)
	return appendTime(b, p.UpdatedAt)
}

func decodeProfile(uid string, v []byte) (store.Profile, error) {
	d := decoder{b: v}
	if d.byte() != profileV1 {
		return store.Profile{}, errCorrupt
	}
	p := store.Profile{UserID: uid, DisplayName: d.string(), About: d.string(), Avatar: d.string()}
	switch d.byte() {
	case 0:
	case 1:
		p.Discoverable = true
	default:
		d.fail()
	}
	p.UpdatedAt = d.time()
	return p, d.finish()
}
