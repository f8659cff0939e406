// Package people lets users find each other and read each other's
// profiles: exact username lookup (rate-limited, refusable per user) and
// profiles readable by the people one shares a chat with. Every refusal
// that concerns another user is the same not-found, so no answer tells a
// stranger who exists.
package people

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/ratelimit"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is the slice of the storage contract this service uses.
type Store interface {
	UserByID(ctx context.Context, id string) (store.User, error)
	UserByUsername(ctx context.Context, username string) (store.User, error)
	store.Profiles
}

// Relations decides who may read whose profile: the same rule as presence
// (the same user, a 1:1 chat with a message, or a shared group).
type Relations interface {
	SharesChat(ctx context.Context, a, b string) (bool, error)
}

// LimitObserver counts refused lookups.
type LimitObserver interface{ ObserveLimitRefusals(limit string, n int) }

// LimitLookup names the username lookup rate in LimitObserver.
const LimitLookup = "user_lookup_rate"

// Limits on profile fields, in characters. The avatar is a reference (a
// URL or a media id), not an image.
const (
	MaxDisplayName = 64
	MaxAbout       = 500
	MaxAvatar      = 512
)

// Options configures the service.
type Options struct {
	// LookupRate and LookupBurst bound each user's username lookups per
	// second; LookupRate 0 means unlimited.
	LookupRate, LookupBurst int
	Metrics                 LimitObserver // nil = not counted
	Logger                  *slog.Logger
	Now                     func() time.Time
}

// Service implements finding people and profiles.
type Service struct {
	st      Store
	rel     Relations
	opts    Options
	lookups *ratelimit.Keyed // per requester; nil = unlimited
	// updating serialises Update per user (striped): it reads, changes and
	// writes the whole profile, and two concurrent patches of different
	// fields must both land.
	updating [32]sync.Mutex
}

// New returns the service.
func New(st Store, rel Relations, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{st: st, rel: rel, opts: opts, lookups: ratelimit.New(opts.LookupRate, opts.LookupBurst)}
}

// Found is what a username lookup tells: enough to start a chat, nothing
// of the profile (that is for people who share a chat).
type Found struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
}

// View is a profile as others see it.
type View struct {
	UserID      string `json:"user_id"`
	Username    string `json:"username,omitempty"` // absent for a deleted account
	DisplayName string `json:"display_name,omitempty"`
	About       string `json:"about,omitempty"`
	Avatar      string `json:"avatar,omitempty"`
	// Deleted marks an account that was deleted: its messages stay in
	// their chats under its id, so anyone may learn that it is gone (and
	// nothing else about it).
	Deleted   bool       `json:"deleted"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

// Own is a user's own profile, with the settings only they see.
type Own struct {
	View
	Discoverable bool      `json:"discoverable"`
	CreatedAt    time.Time `json:"created_at"`
}

// Patch changes some of one's own profile; nil fields stay as they are and
// an empty string clears a field.
type Patch struct {
	DisplayName  *string `json:"display_name"`
	About        *string `json:"about"`
	Avatar       *string `json:"avatar"`
	Discoverable *bool   `json:"discoverable"`
}

// errNoSuchUser is the one answer for a user the requester may not learn
// about, whether it does not exist, is not discoverable, or shares no chat.
var errNoSuchUser = &chat.Error{Code: chat.CodeNotFound, Message: "no such user"}

func (s *Service) internal(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return &chat.Error{Code: chat.CodeUnavailable, Message: "request cancelled or timed out", Err: err}
	}
	s.opts.Logger.Error("people store failure", "op", op, "error", err)
	return &chat.Error{Code: chat.CodeInternal, Message: "storage failure, retry later", Err: fmt.Errorf("%s: %w", op, err)}
}

// Lookup finds a user by exact username for requester. Unknown, malformed
// and non-discoverable usernames get the same not-found; requesters find
// themselves whatever their setting.
func (s *Service) Lookup(ctx context.Context, requester, username string) (Found, error) {
	if !s.lookups.Allow(requester) {
		if s.opts.Metrics != nil {
			s.opts.Metrics.ObserveLimitRefusals(LimitLookup, 1)
		}
		return Found{}, &chat.Error{
			Code:       chat.CodeRateLimited,
			Message:    fmt.Sprintf("username lookups come too fast: at most %d a second (%d at once); retry later", s.opts.LookupRate, s.opts.LookupBurst),
			RetryAfter: time.Second,
		}
	}
	name, err := auth.NormalizeUsername(username)
	if err != nil {
		return Found{}, errNoSuchUser
	}
	u, err := s.st.UserByUsername(ctx, name)
	if errors.Is(err, store.ErrNotFound) || err == nil && !u.Active() {
		// A deleted name stays reserved but finds nobody; a disabled
		// account is not offered either.
		return Found{}, errNoSuchUser
	}
	if err != nil {
		return Found{}, s.internal(ctx, "user by username", err)
	}
	if u.ID != requester {
		p, err := s.profile(ctx, u.ID)
		if err != nil {
			return Found{}, err
		}
		if !p.Discoverable {
			return Found{}, errNoSuchUser
		}
	}
	return Found{UserID: u.ID, Username: u.Username}, nil
}

// Get returns uid's profile to requester: themself or someone who shares a
// chat with uid; everyone else gets the same not-found as for an unknown id.
func (s *Service) Get(ctx context.Context, requester, uid string) (View, error) {
	if !ids.ValidUserID(uid) {
		return View{}, errNoSuchUser
	}
	u, err := s.st.UserByID(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return View{}, errNoSuchUser
	}
	if err != nil {
		return View{}, s.internal(ctx, "user", err)
	}
	if u.Deleted() {
		at := u.DeletedAt
		return View{UserID: u.ID, Deleted: true, DeletedAt: &at}, nil
	}
	if uid != requester {
		ok, err := s.rel.SharesChat(ctx, requester, uid)
		if err != nil {
			return View{}, s.internal(ctx, "shares chat", err)
		}
		if !ok {
			return View{}, errNoSuchUser
		}
	}
	own, err := s.Mine(ctx, uid)
	if err != nil {
		return View{}, err
	}
	return own.View, nil
}

// Mine returns uid's own profile and settings.
func (s *Service) Mine(ctx context.Context, uid string) (Own, error) {
	u, err := s.st.UserByID(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return Own{}, errNoSuchUser
	}
	if err != nil {
		return Own{}, s.internal(ctx, "user", err)
	}
	p, err := s.profile(ctx, uid)
	if err != nil {
		return Own{}, err
	}
	return own(u, p), nil
}

// Update applies patch to uid's profile and returns the result. Every field
// is checked before anything is stored, so a refused patch changes nothing.
func (s *Service) Update(ctx context.Context, uid string, patch Patch) (Own, error) {
	mu := &s.updating[stripe(uid, len(s.updating))]
	mu.Lock()
	defer mu.Unlock()
	u, err := s.st.UserByID(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return Own{}, errNoSuchUser
	}
	if err != nil {
		return Own{}, s.internal(ctx, "user", err)
	}
	p, err := s.profile(ctx, uid)
	if err != nil {
		return Own{}, err
	}
	fields := []struct {
		name string
		in   *string
		max  int // characters
		out  *string
	}{
		{"display_name", patch.DisplayName, MaxDisplayName, &p.DisplayName},
		{"about", patch.About, MaxAbout, &p.About},
		{"avatar", patch.Avatar, MaxAvatar, &p.Avatar},
	}
	for _, f := range fields {
		if f.in == nil {
			continue
		}
		v, err := cleanText(f.name, *f.in, f.max)
		if err != nil {
			return Own{}, err
		}
		*f.out = v
	}
	if patch.Discoverable != nil {
		p.Discoverable = *patch.Discoverable
	}
	p.UpdatedAt = s.opts.Now().UTC().Truncate(time.Millisecond)
	if err := s.st.PutProfile(ctx, p); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Own{}, errNoSuchUser
		}
		return Own{}, s.internal(ctx, "put profile", err)
	}
	return own(u, p), nil
}

// profile is uid's stored profile or the default.
func (s *Service) profile(ctx context.Context, uid string) (store.Profile, error) {
	p, err := s.st.Profile(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return store.DefaultProfile(uid), nil
	}
	if err != nil {
		return store.Profile{}, s.internal(ctx, "profile", err)
	}
	return p, nil
}

func own(u store.User, p store.Profile) Own {
	return Own{
		View:         View{UserID: u.ID, Username: u.Username, DisplayName: p.DisplayName, About: p.About, Avatar: p.Avatar},
		Discoverable: p.Discoverable,
		CreatedAt:    u.CreatedAt,
	}
}

// cleanText trims v and checks it: at most max characters of UTF-8 without
// control characters. Every other user's app shows these fields, and a
// PostgreSQL text column cannot hold NUL or invalid UTF-8.
func cleanText(field, v string, limit int) (string, error) {
	if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return "", &chat.Error{Code: chat.CodeInvalid, Message: field + " must be UTF-8 text without control characters"}
	}
	v = strings.TrimSpace(v)
	if utf8.RuneCountInString(v) > limit {
		return "", &chat.Error{Code: chat.CodeInvalid, Message: fmt.Sprintf("%s must be at most %d characters", field, limit)}
	}
	return v, nil
}

func stripe(uid string, n int) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(uid); i++ {
		h ^= uint32(uid[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
