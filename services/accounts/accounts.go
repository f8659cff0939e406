// Package accounts runs an account's lifecycle after sign-up: the
// operator's list, disabling and enabling, and deletion by the user or the
// operator. Credentials and tokens stay with services/auth; this package
// decides what else has to happen when an account stops.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
)

// Store is the slice of the storage contract this service uses.
type Store interface {
	UserByID(ctx context.Context, id string) (store.User, error)
	UserByUsername(ctx context.Context, username string) (store.User, error)
	store.Accounts
}

// Passwords confirms a user's own password (auth.Service).
type Passwords interface {
	CheckPassword(ctx context.Context, uid, password string) error
}

// Memberships takes a user out of every group (groups.Service.LeaveAll).
type Memberships interface {
	LeaveAll(ctx context.Context, uid string) error
}

// Sessions ends a user's sessions. Tokens stop working by themselves once
// the account is disabled or deleted (every token check reads the account),
// so what is left is closing the connections already open.
type Sessions interface {
	EndSessions(uid string)
}

// Recipients forgets cached knowledge that uid exists (chat.Service).
type Recipients interface {
	ForgetUser(uid string)
}

// Metrics counts lifecycle changes by op.
type Metrics interface{ AccountChanged(op string) }

// Options wires the service; every interface is required except Metrics
// and Logger.
type Options struct {
	Store       Store
	Passwords   Passwords
	Memberships Memberships
	Sessions    Sessions
	Recipients  Recipients
	Metrics     Metrics
	Logger      *slog.Logger
	Now         func() time.Time
}

// Service implements the account lifecycle.
type Service struct{ opts Options }

// ErrUnknownUser is auth's: one error for "no such account" everywhere.
var ErrUnknownUser = auth.ErrUnknownUser

// Status is an account as the operator sees it.
type Status struct {
	UserID    string     `json:"user_id"`
	Username  string     `json:"username"`
	CreatedAt time.Time  `json:"created_at"`
	State     string     `json:"state"` // active, disabled or deleted
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

// New returns the service.
func New(opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	return &Service{opts: opts}
}

type nopMetrics struct{}

func (nopMetrics) AccountChanged(string) {}

// StatusOf describes u.
func StatusOf(u store.User) Status {
	st := Status{UserID: u.ID, Username: u.Username, CreatedAt: u.CreatedAt, State: "active"}
	switch {
	case u.Deleted():
		st.State = "deleted"
		at := u.DeletedAt
		st.DeletedAt = &at
	case u.Disabled:
		st.State = "disabled"
	}
	return st
}

// List pages every account, deleted ones included, by id.
func (s *Service) List(ctx context.Context, after string, limit int) ([]Status, error) {
	us, err := s.opts.Store.ListUsers(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("accounts: list: %w", err)
	}
	out := make([]Status, len(us))
	for i, u := range us {
		out[i] = StatusOf(u)
	}
	return out, nil
}

// Lookup finds an account by username or id, deleted ones included.
func (s *Service) Lookup(ctx context.Context, who string) (store.User, error) {
	if name, err := auth.NormalizeUsername(who); err == nil {
		u, err := s.opts.Store.UserByUsername(ctx, name)
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.User{}, fmt.Errorf("accounts: lookup: %w", err)
		}
	}
	u, err := s.opts.Store.UserByID(ctx, who)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.User{}, ErrUnknownUser
		}
		return store.User{}, fmt.Errorf("accounts: lookup: %w", err)
	}
	return u, nil
}

// SetDisabled disables (or enables) the account named by who (username or
// id). Disabling ends its sessions at once: its tokens stop working on the
// next request and its MQTT connections are closed.
func (s *Service) SetDisabled(ctx context.Context, who string, disabled bool) (Status, error) {
	u, err := s.Lookup(ctx, who)
	if err != nil {
		return Status{}, err
	}
	if err := s.opts.Store.SetUserDisabled(ctx, u.ID, disabled); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Status{}, ErrUnknownUser // deleted meanwhile, or before
		}
		return Status{}, fmt.Errorf("accounts: set disabled: %w", err)
	}
	u.Disabled = disabled
	op := "enabled"
	if disabled {
		op = "disabled"
		s.opts.Sessions.EndSessions(u.ID)
	}
	s.opts.Metrics.AccountChanged(op)
	s.opts.Logger.Info("account "+op, "user", u.ID)
	return StatusOf(u), nil
}

// DeleteOwn deletes the caller's own account after confirming its password.
func (s *Service) DeleteOwn(ctx context.Context, uid, password string) error {
	if err := s.opts.Passwords.CheckPassword(ctx, uid, password); err != nil {
		return err
	}
	_, err := s.remove(ctx, uid)
	return err
}

// Delete deletes the account named by who (the operator). Deleting an
// account whose deletion was interrupted finishes it.
func (s *Service) Delete(ctx context.Context, who string) (Status, error) {
	u, err := s.Lookup(ctx, who)
	if err != nil {
		return Status{}, err
	}
	return s.remove(ctx, u.ID)
}

// remove deletes uid in an order that survives interruption at any step:
//  1. disable it, so no new session and no new group change can start;
//  2. close its connections;
//  3. take it out of every group (handing over the groups it owns);
//  4. write the tombstone, which also drops its devices and push tokens,
//     its end-to-end keys and the device messages waiting for it;
//  5. leave groups again: someone may have added it between 3 and 4, and
//     from 4 on nobody can; and only now forget it as a recipient, since a
//     send before 4 could have cached it again.
//
// Messages stay in their chats under the account's id. If a step fails the
// account is left disabled and the error returned; deleting it again
// resumes.
func (s *Service) remove(ctx context.Context, uid string) (Status, error) {
	err := s.opts.Store.SetUserDisabled(ctx, uid, true)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Status{}, fmt.Errorf("accounts: delete: %w", err)
	}
	s.opts.Sessions.EndSessions(uid)
	if err := s.opts.Memberships.LeaveAll(ctx, uid); err != nil {
		return Status{}, fmt.Errorf("accounts: delete: leave groups: %w", err)
	}
	err = s.opts.Store.DeleteUser(ctx, uid, s.opts.Now().UTC())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Status{}, fmt.Errorf("accounts: delete: %w", err)
	}
	if err := s.opts.Memberships.LeaveAll(ctx, uid); err != nil {
		return Status{}, fmt.Errorf("accounts: delete: leave groups: %w", err)
	}
	s.opts.Recipients.ForgetUser(uid)
	u, gerr := s.opts.Store.UserByID(ctx, uid)
	if gerr != nil {
		if errors.Is(gerr, store.ErrNotFound) {
			return Status{}, ErrUnknownUser
		}
		return Status{}, fmt.Errorf("accounts: delete: %w", gerr)
	}
	if err == nil {
		s.opts.Metrics.AccountChanged("deleted")
		s.opts.Logger.Info("account deleted", "user", uid)
	}
	return StatusOf(u), nil
}
