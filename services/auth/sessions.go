package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/mqchat/mqchat/store"
)

// Sessions: every login opens a session, the family of the refresh tokens
// that descend from it. Access and refresh tokens name their session; only
// the newest refresh token of a family may be exchanged, and presenting an
// older one (it was copied, or raced) revokes the family. A revoked
// session is deleted, so its access tokens stop working at once on REST
// and at MQTT CONNECT, and the SessionCloser closes its live connections.

var (
	// ErrRefreshReused is a rotated refresh token presented again; its
	// session has been revoked. It is an ErrInvalidToken to callers.
	ErrRefreshReused = fmt.Errorf("%w: refresh token reused, session revoked", ErrInvalidToken)
	// ErrSessionNotFound is a session id that is not one of the user's.
	ErrSessionNotFound = errors.New("no such session")
	// ErrWrongPassword is a password change whose old password is wrong.
	ErrWrongPassword = errors.New("wrong password")
)

const (
	// operatorLabel marks the sessions of tokens an operator issued.
	operatorLabel = "operator"
	// MaxSessions bounds one user's live sessions: every login adds one,
	// and a script logging in forever must not grow the store forever. A
	// login past it ends the least recently used session.
	MaxSessions = 100
)

// Identity is who a verified access token speaks for.
type Identity struct {
	UserID    string
	SessionID string
	ExpiresAt time.Time // of the access token
}

// Metrics counts revoked sessions by reason (logout, logout_all,
// password_change, refresh_reuse, evicted).
type Metrics interface {
	SessionsRevoked(reason string, n int)
}

// SessionCloser closes the live connections of revoked sessions.
type SessionCloser interface {
	// CloseSessions closes uid's connections opened with an access token
	// of one of sessionIDs.
	CloseSessions(uid string, sessionIDs []string)
}

// SetSessionCloser installs the closer revocations report to (the MQTT
// broker's connection registry, which is built after this service).
func (s *Service) SetSessionCloser(c SessionCloser) { s.closer.Store(&c) }

// SessionInfo is one session as its user sees it.
type SessionInfo struct {
	ID         string    `json:"id"`
	Label      string    `json:"label"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Current    bool      `json:"current"`
}

type labelKey struct{}

// maxLabel bounds a session label in runes.
const maxLabel = 64

// WithLabel names the client that a login, register or refresh in ctx
// comes from (the REST API passes the User-Agent); the session opened
// keeps it so session lists can tell devices apart. Control characters
// and invalid UTF-8 are dropped and the label is cut to 64 characters.
func WithLabel(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, labelKey{}, cleanLabel(label))
}

func cleanLabel(label string) string {
	out := make([]rune, 0, min(len(label), maxLabel))
	for _, r := range strings.ToValidUTF8(label, "") {
		if len(out) == maxLabel {
			break
		}
		if unicode.IsPrint(r) {
			out = append(out, r)
		}
	}
	return strings.TrimSpace(string(out))
}

func labelOf(ctx context.Context, fallback string) string {
	if l, ok := ctx.Value(labelKey{}).(string); ok && l != "" {
		return l
	}
	return fallback
}

// randomID is 128 random bits: session and refresh-token ids must not be
// guessable.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func validSessionID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// startSession opens a session for uid and returns its first tokens. The
// session lives as long as its refresh tokens, or as the access token when
// an operator issued a longer one.
func (s *Service) startSession(ctx context.Context, uid, label string, accessTTL time.Duration) (Tokens, error) {
	now := s.opts.Now()
	if err := s.pruneSessions(ctx, uid, now); err != nil {
		return Tokens{}, err
	}
	sess := store.Session{
		ID: randomID(), UserID: uid, Label: labelOf(ctx, label), RefreshID: randomID(),
		CreatedAt: now.UTC(), LastUsedAt: now.UTC(), ExpiresAt: now.Add(max(s.opts.RefreshTTL, accessTTL)).UTC(),
	}
	if err := s.users.CreateSession(ctx, sess); err != nil {
		return Tokens{}, fmt.Errorf("auth: open session: %w", err)
	}
	return s.issue(uid, sess.ID, sess.RefreshID, now, accessTTL)
}

// pruneSessions deletes uid's expired sessions and, when it has
// MaxSessions live ones, the least recently used, so that a new one fits.
func (s *Service) pruneSessions(ctx context.Context, uid string, now time.Time) error {
	all, err := s.users.UserSessions(ctx, uid)
	if err != nil {
		return fmt.Errorf("auth: prune sessions: %w", err)
	}
	var drop, live []store.Session
	for _, sess := range all {
		if sess.ExpiresAt.After(now) {
			live = append(live, sess)
		} else {
			drop = append(drop, sess)
		}
	}
	var evicted []string
	if extra := len(live) - MaxSessions + 1; extra > 0 {
		slices.SortFunc(live, func(a, b store.Session) int { return a.LastUsedAt.Compare(b.LastUsedAt) })
		for _, sess := range live[:extra] {
			drop = append(drop, sess)
			evicted = append(evicted, sess.ID)
		}
	}
	for _, sess := range drop {
		if err := s.users.DeleteSession(ctx, sess.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("auth: prune sessions: %w", err)
		}
	}
	s.closeSessions(uid, "evicted", evicted)
	return nil
}

func (s *Service) issue(uid, sid, refreshID string, now time.Time, accessTTL time.Duration) (Tokens, error) {
	access, err := s.sign(uid, sid, randomID(), typeAccess, now, accessTTL)
	if err != nil {
		return Tokens{}, err
	}
	refresh, err := s.sign(uid, sid, refreshID, typeRefresh, now, s.opts.RefreshTTL)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{
		UserID: uid, AccessToken: access, RefreshToken: refresh,
		ExpiresIn: int64(accessTTL / time.Second), SessionID: sid,
	}, nil
}

// Identify verifies an access token, that its user exists and that its
// session has not been revoked. It reads the store, so it runs per REST
// request and per CONNECT, never per MQTT packet.
func (s *Service) Identify(ctx context.Context, accessToken string) (Identity, error) {
	c, err := s.verify(accessToken, typeAccess)
	if err != nil {
		return Identity{}, err
	}
	if _, err := s.User(ctx, c.Subject); err != nil {
		return Identity{}, err
	}
	if _, err := s.session(ctx, c.Subject, c.Session); err != nil {
		return Identity{}, err
	}
	return Identity{UserID: c.Subject, SessionID: c.Session, ExpiresAt: c.ExpiresAt.Time}, nil
}

// session returns uid's session sid; a missing one (revoked) or another
// user's is an invalid token.
func (s *Service) session(ctx context.Context, uid, sid string) (store.Session, error) {
	sess, err := s.users.Session(ctx, sid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Session{}, fmt.Errorf("%w: session revoked", ErrInvalidToken)
	case err != nil:
		return store.Session{}, fmt.Errorf("auth: session: %w", err)
	case sess.UserID != uid:
		return store.Session{}, ErrInvalidToken
	}
	return sess, nil
}

// Refresh exchanges the newest refresh token of a session for a new pair
// and makes it the only one that may be exchanged next. Presenting any
// older token of the family, or losing a race with another exchange of
// the same token, revokes the session: a refresh token seen twice has
// been copied, and which holder is the legitimate one cannot be told.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	c, err := s.verify(refreshToken, typeRefresh)
	if err != nil {
		return Tokens{}, err
	}
	if _, err := s.User(ctx, c.Subject); err != nil {
		return Tokens{}, err
	}
	sess, err := s.session(ctx, c.Subject, c.Session)
	if err != nil {
		return Tokens{}, err
	}
	if sess.RefreshID != c.ID {
		return Tokens{}, s.reused(ctx, sess)
	}
	now := s.opts.Now()
	next := randomID()
	err = s.users.RotateSession(ctx, sess.ID, c.ID, next, now.UTC(), now.Add(s.opts.RefreshTTL).UTC())
	switch {
	case errors.Is(err, store.ErrConflict):
		return Tokens{}, s.reused(ctx, sess)
	case errors.Is(err, store.ErrNotFound):
		return Tokens{}, fmt.Errorf("%w: session revoked", ErrInvalidToken)
	case err != nil:
		return Tokens{}, fmt.Errorf("auth: rotate session: %w", err)
	}
	return s.issue(c.Subject, sess.ID, next, now, s.opts.AccessTTL)
}

func (s *Service) reused(ctx context.Context, sess store.Session) error {
	s.log.Warn("refresh token reused; revoking its session", "user", sess.UserID, "session", sess.ID)
	if err := s.users.DeleteSession(ctx, sess.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("auth: revoke reused session: %w", err)
	}
	s.closeSessions(sess.UserID, "refresh_reuse", []string{sess.ID})
	return ErrRefreshReused
}

// closeSessions reports sessions just revoked for reason.
func (s *Service) closeSessions(uid, reason string, sids []string) {
	if len(sids) == 0 {
		return
	}
	if s.opts.Metrics != nil {
		s.opts.Metrics.SessionsRevoked(reason, len(sids))
	}
	if c := s.closer.Load(); c != nil {
		(*c).CloseSessions(uid, sids)
	}
}

// Logout revokes one session of uid (its own, or one picked from the
// session list); ErrSessionNotFound when uid has no session sid.
func (s *Service) Logout(ctx context.Context, uid, sid string) error {
	if !validSessionID(sid) {
		return ErrSessionNotFound // no store sees ids no session can have
	}
	sess, err := s.users.Session(ctx, sid)
	if errors.Is(err, store.ErrNotFound) || err == nil && sess.UserID != uid {
		return ErrSessionNotFound
	}
	if err != nil {
		return fmt.Errorf("auth: logout: %w", err)
	}
	if err := s.users.DeleteSession(ctx, sid); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrSessionNotFound
		}
		return fmt.Errorf("auth: logout: %w", err)
	}
	s.closeSessions(uid, "logout", []string{sid})
	return nil
}

// RevokeAll revokes every session of uid and closes all its connections
// that were opened with a session's token: logout everywhere, and what
// disabling or deleting an account calls.
func (s *Service) RevokeAll(ctx context.Context, uid string) error {
	return s.revokeOthers(ctx, uid, "", "logout_all")
}

// revokeOthers revokes every session of uid but keep ("" = none).
func (s *Service) revokeOthers(ctx context.Context, uid, keep, reason string) error {
	gone, err := s.users.DeleteUserSessions(ctx, uid, keep)
	if err != nil {
		return fmt.Errorf("auth: revoke sessions: %w", err)
	}
	s.closeSessions(uid, reason, gone)
	return nil
}

// Sessions lists uid's live sessions, marking current.
func (s *Service) Sessions(ctx context.Context, uid, current string) ([]SessionInfo, error) {
	all, err := s.users.UserSessions(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("auth: sessions: %w", err)
	}
	now := s.opts.Now()
	out := make([]SessionInfo, 0, len(all))
	for _, sess := range all {
		if !sess.ExpiresAt.After(now) {
			continue // its tokens are all expired; nothing to show or revoke
		}
		out = append(out, SessionInfo{
			ID: sess.ID, Label: sess.Label, CreatedAt: sess.CreatedAt, LastUsedAt: sess.LastUsedAt,
			ExpiresAt: sess.ExpiresAt, Current: sess.ID == current,
		})
	}
	return out, nil
}

// ChangePassword checks the old password, stores the new one, revokes
// every other session of the user and returns fresh tokens for sid, whose
// older refresh tokens stop working.
func (s *Service) ChangePassword(ctx context.Context, uid, sid, oldPassword, newPassword string) (Tokens, error) {
	u, err := s.User(ctx, uid)
	if err != nil {
		return Tokens{}, err
	}
	if len(oldPassword) > maxPassword || bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(oldPassword)) != nil {
		return Tokens{}, ErrWrongPassword
	}
	if err := validPassword(newPassword); err != nil {
		return Tokens{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(newPassword), s.opts.BcryptCost)
	if err != nil {
		return Tokens{}, fmt.Errorf("auth: hash password: %w", err)
	}
	if err := s.users.SetPasswordHash(ctx, uid, hash); err != nil {
		return Tokens{}, fmt.Errorf("auth: set password: %w", err)
	}
	if err := s.revokeOthers(ctx, uid, sid, "password_change"); err != nil {
		return Tokens{}, err
	}
	// A refresh of this session racing the change may move RefreshID
	// between the read and the rotation; the rotation then retries.
	for range 3 {
		sess, err := s.session(ctx, uid, sid)
		if err != nil {
			return Tokens{}, err
		}
		now := s.opts.Now()
		next := randomID()
		err = s.users.RotateSession(ctx, sid, sess.RefreshID, next, now.UTC(), now.Add(s.opts.RefreshTTL).UTC())
		switch {
		case err == nil:
			return s.issue(uid, sid, next, now, s.opts.AccessTTL)
		case errors.Is(err, store.ErrNotFound):
			return Tokens{}, fmt.Errorf("%w: session revoked", ErrInvalidToken)
		case !errors.Is(err, store.ErrConflict):
			return Tokens{}, fmt.Errorf("auth: rotate session: %w", err)
		}
	}
	return Tokens{}, fmt.Errorf("auth: rotate session %s: %w", sid, store.ErrConflict)
}
