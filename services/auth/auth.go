// Package auth manages accounts and the tokens that open REST and MQTT
// sessions: registration, login, refresh with rotation and reuse detection,
// logout, password change and verification of access tokens.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

var (
	// ErrInvalidCredentials hides whether the username or the password was wrong.
	ErrInvalidCredentials = errors.New("invalid username or password")
	ErrUsernameTaken      = errors.New("username is taken")
	ErrInvalidToken       = errors.New("invalid token")
	ErrTokenExpired       = errors.New("token expired")
	ErrUnknownUser        = errors.New("unknown user")
)

// InputError describes a rejected username or password.
type InputError struct{ Field, Reason string }

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

// Users is the slice of the store this service needs.
type Users interface {
	CreateUser(ctx context.Context, u store.User) error
	UserByID(ctx context.Context, id string) (store.User, error)
	UserByUsername(ctx context.Context, username string) (store.User, error)
	store.Sessions
	store.Passwords
}

// Options configures the service.
type Options struct {
	Secret     []byte
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	BcryptCost int
	Now        func() time.Time // nil = time.Now
	Logger     *slog.Logger     // nil discards
	Metrics    Metrics          // nil = not counted
	// Throttle limits password guesses per username; nil = no limit.
	Throttle *Throttle
}

// Service implements accounts and tokens.
type Service struct {
	users     Users
	opts      Options
	dummyHash []byte // compared against for unknown users so login timing does not reveal them
	closer    atomic.Pointer[SessionCloser]
	log       *slog.Logger
}

// Tokens is what register, login and refresh hand out.
type Tokens struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"` // seconds until the access token expires
	SessionID    string `json:"session_id"`
}

const (
	issuer      = "mqchat"
	typeAccess  = "access"
	typeRefresh = "refresh"
	minPassword = 8
	maxPassword = 72 // bcrypt ignores bytes past 72
)

type claims struct {
	Type string `json:"typ"`
	// Session is the session (refresh-token family) the token belongs to;
	// a token whose session is gone is refused.
	Session string `json:"sid,omitempty"`
	jwt.RegisteredClaims
}

// New returns a service backed by users.
func New(users Users, opts Options) (*Service, error) {
	if len(opts.Secret) < 32 {
		return nil, errors.New("auth: secret must be at least 32 bytes")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a real password"), opts.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("auth: dummy hash: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{users: users, opts: opts, dummyHash: dummy, log: log}, nil
}

// NormalizeUsername lower-cases and validates a username: 3–32 characters of
// a-z, 0-9, '_', '-', '.'.
func NormalizeUsername(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if len(name) < 3 || len(name) > 32 {
		return "", &InputError{"username", "must be 3 to 32 characters"}
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "", &InputError{"username", "may contain only a-z, 0-9, '_', '-' and '.'"}
		}
	}
	return name, nil
}

func validPassword(pw string) error {
	if utf8.RuneCountInString(pw) < minPassword {
		return &InputError{"password", fmt.Sprintf("must be at least %d characters", minPassword)}
	}
	if len(pw) > maxPassword {
		return &InputError{"password", fmt.Sprintf("must be at most %d bytes", maxPassword)}
	}
	return nil
}

// CreateUser makes an account without issuing tokens (operators' CLI).
func (s *Service) CreateUser(ctx context.Context, username, password string) (store.User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return store.User{}, err
	}
	if err := validPassword(password); err != nil {
		return store.User{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.opts.BcryptCost)
	if err != nil {
		return store.User{}, fmt.Errorf("auth: hash password: %w", err)
	}
	u := store.User{ID: ids.NewUserID(), Username: name, PasswordHash: hash, CreatedAt: s.opts.Now().UTC()}
	if err := s.users.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.User{}, ErrUsernameTaken
		}
		return store.User{}, fmt.Errorf("auth: create user: %w", err)
	}
	return u, nil
}

// Register creates an account and returns its first tokens.
func (s *Service) Register(ctx context.Context, username, password string) (Tokens, error) {
	u, err := s.CreateUser(ctx, username, password)
	if err != nil {
		return Tokens{}, err
	}
	return s.startSession(ctx, u.ID, "", s.opts.AccessTTL)
}

// Login checks a username and password. Attempts are throttled per
// username (see Throttle) before anything is looked up, so the answer is the
// same whether the account exists or not.
func (s *Service) Login(ctx context.Context, username, password string) (Tokens, error) {
	name, nameErr := NormalizeUsername(username)
	key := throttleKey(username, name, nameErr)
	if err := s.opts.Throttle.begin(key); err != nil {
		return Tokens{}, err
	}
	var u store.User
	err := nameErr
	if err == nil {
		u, err = s.users.UserByUsername(ctx, name)
	}
	if err == nil && !u.Active() {
		// A deleted account has no password and a disabled one may not log
		// in: both answer exactly as an unknown username does.
		err = store.ErrNotFound
	}
	if err != nil {
		if nameErr == nil && !errors.Is(err, store.ErrNotFound) {
			return Tokens{}, fmt.Errorf("auth: login: %w", err)
		}
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return Tokens{}, ErrInvalidCredentials
	}
	// bcrypt ignores bytes past 72, so a longer password could match one it
	// only starts with; no such password can have been registered.
	if len(password) > maxPassword || bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		return Tokens{}, ErrInvalidCredentials
	}
	s.opts.Throttle.succeed(key)
	return s.startSession(ctx, u.ID, "", s.opts.AccessTTL)
}

// throttleKey is the username the throttle counts against: the normalised
// one, or for a name that cannot exist its trimmed lower-cased form, capped
// so a flood of long names cannot grow memory.
func throttleKey(raw, name string, nameErr error) string {
	if nameErr == nil {
		return name
	}
	k := strings.ToLower(strings.TrimSpace(raw))
	if len(k) > 64 {
		k = k[:64]
	}
	return k
}

// IssueTokens mints tokens for an existing user; accessTTL 0 means the
// configured lifetime (operators give devices longer-lived tokens).
func (s *Service) IssueTokens(ctx context.Context, username string, accessTTL time.Duration) (Tokens, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return Tokens{}, err
	}
	u, err := s.users.UserByUsername(ctx, name)
	if err == nil && !u.Active() {
		err = store.ErrNotFound
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Tokens{}, ErrUnknownUser
		}
		return Tokens{}, fmt.Errorf("auth: issue: %w", err)
	}
	if accessTTL <= 0 {
		accessTTL = s.opts.AccessTTL
	}
	return s.startSession(ctx, u.ID, operatorLabel, accessTTL)
}

// Authenticate verifies an access token, that its user still exists and
// that its session has not been revoked.
func (s *Service) Authenticate(ctx context.Context, accessToken string) (string, error) {
	id, err := s.Identify(ctx, accessToken)
	return id.UserID, err
}

// User returns an account by id.
func (s *Service) User(ctx context.Context, uid string) (store.User, error) {
	u, err := s.users.UserByID(ctx, uid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.User{}, ErrUnknownUser
		}
		return store.User{}, fmt.Errorf("auth: user: %w", err)
	}
	// Every token check (REST, refresh, MQTT CONNECT) comes through here,
	// so disabling or deleting an account ends its sessions at once.
	if !u.Active() {
		return store.User{}, ErrUnknownUser
	}
	return u, nil
}

func (s *Service) sign(uid, sid, jti, typ string, now time.Time, ttl time.Duration) (string, error) {
	c := claims{Type: typ, Session: sid, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   uid,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		ID:        jti, // unique per token so two refreshes in one second differ
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.opts.Secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return tok, nil
}

func (s *Service) verify(token, typ string) (claims, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.opts.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.opts.Now),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return claims{}, ErrTokenExpired
		}
		return claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	// A token without a session cannot be revoked, so none is accepted.
	if c.Type != typ || !ids.ValidUserID(c.Subject) || !validSessionID(c.Session) || c.ID == "" {
		return claims{}, ErrInvalidToken
	}
	return c, nil
}
