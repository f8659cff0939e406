// Package retention purges messages older than their chat's retention
// period and serves the per-chat setting. A group has one setting, changed
// by its owners and admins; in a 1:1 chat each member sets their own side
// and the shorter of the two applies. Chats without a setting use the
// server default, and every period is capped to the server maximum.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is what the service reads and writes.
type Store interface {
	store.Purger
	store.ChatRetention
	History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error)
	Member(ctx context.Context, groupID, uid string) (store.Member, error)
}

// Owner tells whether this node owns a chat (is its single writer); in a
// cluster only the owner purges, so two nodes never archive or purge the
// same messages.
type Owner interface {
	Owns(chat string) bool
}

// Archiver keeps messages before they are purged; a purge happens only
// after Archive returned nil for its messages.
type Archiver interface {
	Archive(ctx context.Context, chat string, msgs []store.Message) error
}

// Releaser learns which messages were purged, after the purge (attachments
// referenced only by them can go). Its errors are logged: the messages are
// gone whatever it answers.
type Releaser interface {
	Release(ctx context.Context, chat string, msgs []store.Message) error
}

// Metrics observes purges and passes.
type Metrics interface {
	ObservePurged(n int)
	ObservePass(seconds float64)
}

// Options configure the service. Zero Default and Max keep messages
// forever unless a chat has its own setting.
type Options struct {
	Default, Max time.Duration
	// Interval is the time between passes (Run); Batch bounds the messages
	// purged per chat per pass.
	Interval time.Duration
	Batch    int
	// Chats lists every chat holding messages; without it a pass visits
	// only chats that have a setting (a default or maximum then applies to
	// those alone).
	Chats    store.ChatLister
	Owner    Owner
	Archiver Archiver
	Releaser Releaser
	Metrics  Metrics
	Logger   *slog.Logger
	Now      func() time.Time
}

// Service is the purger and the settings' gatekeeper.
type Service struct {
	st   Store
	opts Options
}

// listPage is how many chat ids one store call lists.
const listPage = 500

// New returns a service over st.
func New(st Store, opts Options) *Service {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	return &Service{st: st, opts: opts}
}

// Setting is a chat's retention as one user sees it.
type Setting struct {
	// Own is the caller's setting: the group's, or the caller's side of a
	// 1:1 chat; 0 = the server default.
	Own time.Duration
	// Effective is the period that applies to the chat; 0 = forever.
	Effective time.Duration
}

var (
	errNoChat = &chat.Error{Code: chat.CodeNotFound, Message: "no such chat"}
	errAdmin  = &chat.Error{Code: chat.CodeNotAuthorized, Message: "only a group's owners and admins may change its retention"}
)

// access checks that uid takes part in chat and returns the user id its
// setting is stored under ("" for a group) and whether uid may change it.
func (s *Service) access(ctx context.Context, uid, chatID string) (settingUser string, mayChange bool, err error) {
	if _, _, ok := chat.DirectMembers(chatID); ok {
		if !chat.ValidChatID(chatID) || !chat.IsDirectMember(chatID, uid) {
			return "", false, errNoChat
		}
		return uid, true, nil
	}
	gid, ok := chat.GroupID(chatID)
	if !ok || !chat.ValidChatID(chatID) {
		return "", false, errNoChat
	}
	m, err := s.st.Member(ctx, gid, uid)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, errNoChat
	}
	if err != nil {
		return "", false, fmt.Errorf("retention: membership of %q in %q: %w", uid, gid, err)
	}
	return "", m.Role == store.RoleOwner || m.Role == store.RoleAdmin, nil
}

// Get returns chat's retention as uid sees it.
func (s *Service) Get(ctx context.Context, uid, chatID string) (Setting, error) {
	su, _, err := s.access(ctx, uid, chatID)
	if err != nil {
		return Setting{}, err
	}
	return s.setting(ctx, chatID, su)
}

// Set changes uid's setting of chat (0 = back to the server default) and
// returns the result.
func (s *Service) Set(ctx context.Context, uid, chatID string, period time.Duration) (Setting, error) {
	if period < 0 || period > maxPeriod {
		return Setting{}, &chat.Error{Code: chat.CodeInvalid, Field: "seconds",
			Message: fmt.Sprintf("must be between 0 (server default) and %d", int64(maxPeriod/time.Second))}
	}
	su, may, err := s.access(ctx, uid, chatID)
	if err != nil {
		return Setting{}, err
	}
	if !may {
		return Setting{}, errAdmin
	}
	r := store.RetentionSetting{Chat: chatID, UserID: su, Period: period, UpdatedAt: s.opts.Now()}
	if err := s.st.SetRetention(ctx, r); err != nil {
		return Setting{}, fmt.Errorf("retention: set %q: %w", chatID, err)
	}
	return s.setting(ctx, chatID, su)
}

// maxPeriod bounds a setting (100 years), well inside every store's time
// range.
const maxPeriod = 100 * 365 * 24 * time.Hour

func (s *Service) setting(ctx context.Context, chatID, su string) (Setting, error) {
	rs, err := s.st.Retention(ctx, chatID)
	if err != nil {
		return Setting{}, fmt.Errorf("retention: settings of %q: %w", chatID, err)
	}
	out := Setting{Effective: s.effective(chatID, rs)}
	for _, r := range rs {
		if r.UserID == su {
			out.Own = r.Period
		}
	}
	return out, nil
}

// Period is the retention that applies to chat; 0 = forever.
func (s *Service) Period(ctx context.Context, chatID string) (time.Duration, error) {
	rs, err := s.st.Retention(ctx, chatID)
	if err != nil {
		return 0, fmt.Errorf("retention: settings of %q: %w", chatID, err)
	}
	return s.effective(chatID, rs), nil
}

// effective folds a chat's settings: each side's own setting or the
// default, the shortest side, capped to the maximum. 0 stands for
// forever throughout.
func (s *Service) effective(chatID string, rs []store.RetentionSetting) time.Duration {
	var sides []string
	if a, b, ok := chat.DirectMembers(chatID); ok {
		sides = []string{a, b}
	} else {
		sides = []string{""}
	}
	var p time.Duration
	for _, side := range sides {
		v := s.opts.Default
		for _, r := range rs {
			if r.UserID == side {
				v = r.Period
			}
		}
		p = shorter(p, v)
	}
	return shorter(p, s.opts.Max)
}

// shorter is the shorter of two periods where 0 is forever.
func shorter(a, b time.Duration) time.Duration {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// Run makes a pass every Interval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("retention pass", "err", err)
		}
	}
}

// Pass purges what has expired in every chat this node owns, at most
// Batch messages per chat, and returns how many it purged. A chat that
// fails is logged and skipped, so one bad chat cannot stop the others.
func (s *Service) Pass(ctx context.Context) (int, error) {
	start := time.Now()
	defer func() { s.opts.Metrics.ObservePass(time.Since(start).Seconds()) }()
	list := s.st.RetentionChats
	if s.opts.Chats != nil && (s.opts.Default > 0 || s.opts.Max > 0) {
		list = s.opts.Chats.ListChats
	}
	total := 0
	after := ""
	for {
		chats, err := list(ctx, after, listPage)
		if err != nil {
			return total, fmt.Errorf("retention: list chats: %w", err)
		}
		for _, c := range chats {
			if s.opts.Owner != nil && !s.opts.Owner.Owns(c) {
				continue
			}
			n, err := s.PurgeChat(ctx, c)
			total += n
			if err != nil {
				if ctx.Err() != nil {
					return total, ctx.Err()
				}
				s.opts.Logger.Warn("retention: purge", "chat", c, "err", err)
			}
		}
		if len(chats) < listPage {
			return total, nil
		}
		after = chats[len(chats)-1]
	}
}

// PurgeChat purges at most Batch of chat's expired messages.
func (s *Service) PurgeChat(ctx context.Context, chatID string) (int, error) {
	period, err := s.Period(ctx, chatID)
	if err != nil || period == 0 {
		return 0, err
	}
	before := s.opts.Now().Add(-period)
	if s.opts.Archiver == nil && s.opts.Releaser == nil {
		n, _, err := s.st.PurgeMessages(ctx, chatID, before, s.opts.Batch)
		if err != nil {
			return 0, fmt.Errorf("retention: purge %q: %w", chatID, err)
		}
		s.opts.Metrics.ObservePurged(n)
		return n, nil
	}
	// The hooks need the messages themselves: read the head, keep its
	// expired prefix, and purge exactly that many. Only this node writes
	// the chat's head, so the purge meets the same prefix.
	first, err := s.st.FirstSeq(ctx, chatID)
	if err != nil {
		return 0, fmt.Errorf("retention: first seq of %q: %w", chatID, err)
	}
	// Before bounds the page too: After 0 (a chat never purged) would
	// otherwise ask for the newest page.
	head, err := s.st.History(ctx, chatID, store.HistoryQuery{After: first - 1, Before: first + uint64(s.opts.Batch), Limit: s.opts.Batch})
	if err != nil {
		return 0, fmt.Errorf("retention: read %q: %w", chatID, err)
	}
	k := 0
	for k < len(head) && head[k].SentAt.Before(before) {
		k++
	}
	if k == 0 {
		return 0, nil
	}
	doomed := head[:k]
	if s.opts.Archiver != nil {
		if err := s.opts.Archiver.Archive(ctx, chatID, doomed); err != nil {
			return 0, fmt.Errorf("retention: archive %q: %w", chatID, err)
		}
	}
	n, _, err := s.st.PurgeMessages(ctx, chatID, before, k)
	if err != nil {
		return 0, fmt.Errorf("retention: purge %q: %w", chatID, err)
	}
	s.opts.Metrics.ObservePurged(n)
	if s.opts.Releaser != nil && n > 0 {
		if err := s.opts.Releaser.Release(ctx, chatID, doomed[:min(n, k)]); err != nil {
			s.opts.Logger.Warn("retention: release purged messages", "chat", chatID, "err", err)
		}
	}
	return n, nil
}

type nopMetrics struct{}

func (nopMetrics) ObservePurged(int)   {}
func (nopMetrics) ObservePass(float64) {}
