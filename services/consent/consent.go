// Package consent keeps each user's say over who reaches them: the block
// list, the privacy settings (who sees their presence, whether message
// requests are pushed), message requests (1:1 chats opened by strangers,
// requests.go) and group invitations (invites.go).
//
// Blocking is silent by design: nothing a blocked user can observe changes
// (sends are acknowledged as before, invitations answer as before), only
// what reaches the blocker does, so every caller asks Blocked and acts on
// it without telling the blocked side.
//
// Blocked is asked on every 1:1 send and typing notice, and PresenceHidden
// on every presence delivery, so answers come from memory: each user's
// block set, settings and pending requests are loaded once and kept until
// that user's change drops them.
package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is the block list aggregate.
type Store interface {
	store.Blocks
	store.PrivacySettings
	store.DirectRequests
	store.GroupInvites
}

// DefaultMaxBlocks is Options.MaxBlocks when it is 0.
const DefaultMaxBlocks = 1000

// DefaultCacheUsers is Options.CacheUsers when it is 0.
const DefaultCacheUsers = 65536

// Options configures the service.
type Options struct {
	// MaxBlocks bounds one user's block list: it is held in memory whole
	// while the user is active and answered as one page.
	MaxBlocks int
	// CacheUsers bounds how many users' block sets are kept in memory.
	CacheUsers int
	// GroupInvites is InvitesConsent (the default) or InvitesAuto.
	GroupInvites string
	Logger       *slog.Logger
	Now          func() time.Time
	// Changed, when set, is told of every user whose consent changed here,
	// after the local cache dropped it: a cluster tells the other nodes,
	// which call Forget.
	Changed func(uid string)
}

// Service implements consent. It is safe for concurrent use.
type Service struct {
	st   Store
	opts Options
	rel  Relations // nil = every new 1:1 chat with someone else is a request

	// gen moves on every change, so a set read from the store while a
	// change ran is not cached over it (see blocks).
	gen   atomic.Uint64
	mu    sync.RWMutex
	cache map[string]*userState
	// writing serialises one user's block changes, so the MaxBlocks check
	// and the write are one step.
	writing [32]sync.Mutex
}

// New returns the service.
func New(st Store, opts Options) *Service {
	if opts.MaxBlocks <= 0 {
		opts.MaxBlocks = DefaultMaxBlocks
	}
	if opts.CacheUsers <= 0 {
		opts.CacheUsers = DefaultCacheUsers
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.GroupInvites == "" {
		opts.GroupInvites = InvitesConsent
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{st: st, opts: opts, cache: make(map[string]*userState)}
}

func invalid(msg string) error { return &chat.Error{Code: chat.CodeInvalid, Message: msg} }

// Block makes uid block other. It is idempotent. other need not exist:
// answering differently for unknown ids would tell a prober who exists.
func (s *Service) Block(ctx context.Context, uid, other string) (store.Block, error) {
	if !ids.ValidUserID(other) {
		return store.Block{}, invalid("user_id is not a user id")
	}
	if other == uid {
		return store.Block{}, invalid("you cannot block yourself")
	}
	mu := s.lock(uid)
	mu.Lock()
	defer mu.Unlock()
	have, err := s.blocks(ctx, uid)
	if err != nil {
		return store.Block{}, err
	}
	if since, ok := have[other]; ok {
		return store.Block{UserID: uid, BlockedID: other, CreatedAt: since}, nil
	}
	if len(have) >= s.opts.MaxBlocks {
		return store.Block{}, &chat.Error{Code: chat.CodeConflict,
			Message: fmt.Sprintf("at most %d blocked users: unblock one (DELETE /v1/blocks/{user_id}) first", s.opts.MaxBlocks)}
	}
	b := store.Block{UserID: uid, BlockedID: other, CreatedAt: s.opts.Now().UTC().Truncate(time.Millisecond)}
	err = s.st.PutBlock(ctx, b)
	s.forget(uid) // even on error: the write may have landed
	if err != nil {
		return store.Block{}, s.internal(ctx, "put block", err)
	}
	return b, nil
}

// Unblock lifts uid's block of other; CodeNotFound when there is none.
func (s *Service) Unblock(ctx context.Context, uid, other string) error {
	if !ids.ValidUserID(other) {
		return &chat.Error{Code: chat.CodeNotFound, Message: "not blocked"}
	}
	mu := s.lock(uid)
	mu.Lock()
	defer mu.Unlock()
	err := s.st.DeleteBlock(ctx, uid, other)
	s.forget(uid)
	if errors.Is(err, store.ErrNotFound) {
		return &chat.Error{Code: chat.CodeNotFound, Message: "not blocked"}
	}
	if err != nil {
		return s.internal(ctx, "delete block", err)
	}
	return nil
}

// List returns uid's blocks ordered by blocked user id.
func (s *Service) List(ctx context.Context, uid string) ([]store.Block, error) {
	bs, err := s.st.BlocksOf(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "blocks", err)
	}
	return bs, nil
}

// Blocked reports whether blocker blocks other.
func (s *Service) Blocked(ctx context.Context, blocker, other string) (bool, error) {
	_, ok, err := s.BlockedSince(ctx, blocker, other)
	return ok, err
}

// BlockedSince reports whether blocker blocks other and since when:
// messages other sent from then on are hidden from blocker.
func (s *Service) BlockedSince(ctx context.Context, blocker, other string) (time.Time, bool, error) {
	if blocker == other {
		return time.Time{}, false, nil
	}
	set, err := s.blocks(ctx, blocker)
	if err != nil {
		return time.Time{}, false, err
	}
	since, ok := set[other]
	return since, ok, nil
}

// EitherBlocked reports whether a blocks b or b blocks a: presence is
// hidden both ways.
func (s *Service) EitherBlocked(ctx context.Context, a, b string) (bool, error) {
	if ok, err := s.Blocked(ctx, a, b); ok || err != nil {
		return ok, err
	}
	return s.Blocked(ctx, b, a)
}

// userState is what is kept in memory of one user: whom they block
// (blocked → since), their privacy settings and pending requests.
type userState struct {
	blocks   map[string]time.Time
	privacy  store.Privacy
	requests map[string]struct{} // pending requests by chat
}

// blocks returns uid's block set. The set is shared: callers must not
// modify it.
func (s *Service) blocks(ctx context.Context, uid string) (map[string]time.Time, error) {
	u, err := s.user(ctx, uid)
	if err != nil {
		return nil, err
	}
	return u.blocks, nil
}

// user returns uid's state from the cache, or loads it (three store reads).
func (s *Service) user(ctx context.Context, uid string) (*userState, error) {
	s.mu.RLock()
	u, ok := s.cache[uid]
	s.mu.RUnlock()
	if ok {
		return u, nil
	}
	gen := s.gen.Load()
	bs, err := s.st.BlocksOf(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "blocks", err)
	}
	u = &userState{blocks: make(map[string]time.Time, len(bs))}
	for _, b := range bs {
		u.blocks[b.BlockedID] = b.CreatedAt
	}
	if u.privacy, err = s.loadPrivacy(ctx, uid); err != nil {
		return nil, err
	}
	rs, err := s.st.RequestsOf(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "requests", err)
	}
	u.requests = make(map[string]struct{}, len(rs))
	for _, r := range rs {
		u.requests[r.Chat] = struct{}{}
	}
	s.mu.Lock()
	// A change that ran during the reads may not be in them: answer with
	// them but do not keep them.
	if s.gen.Load() == gen {
		if len(s.cache) >= s.opts.CacheUsers {
			clear(s.cache) // reloading a user costs three reads
		}
		s.cache[uid] = u
	}
	s.mu.Unlock()
	return u, nil
}

func (s *Service) forget(uid string) {
	s.Forget(uid)
	if s.opts.Changed != nil {
		s.opts.Changed(uid)
	}
}

// Forget drops what is cached about uid: its consent changed on another
// node.
func (s *Service) Forget(uid string) {
	s.mu.Lock()
	s.gen.Add(1)
	delete(s.cache, uid)
	s.mu.Unlock()
}

func (s *Service) lock(uid string) *sync.Mutex {
	h := uint32(2166136261)
	for i := 0; i < len(uid); i++ {
		h ^= uint32(uid[i])
		h *= 16777619
	}
	return &s.writing[h%uint32(len(s.writing))]
}

func (s *Service) internal(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return &chat.Error{Code: chat.CodeUnavailable, Message: "request cancelled or timed out", Err: err}
	}
	s.opts.Logger.Error("consent store failure", "op", op, "error", err)
	return &chat.Error{Code: chat.CodeInternal, Message: "storage failure, retry later", Err: fmt.Errorf("%s: %w", op, err)}
}
