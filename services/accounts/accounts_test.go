package accounts

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

// recorder stands in for the collaborators and records the order of calls.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	leaveErr error
	password string
}

func (r *recorder) add(c string) { r.mu.Lock(); r.calls = append(r.calls, c); r.mu.Unlock() }

func (r *recorder) CheckPassword(_ context.Context, uid, pw string) error {
	r.add("check:" + uid)
	if pw != r.password {
		return auth.ErrInvalidCredentials
	}
	return nil
}
func (r *recorder) LeaveAll(_ context.Context, uid string) error {
	r.add("leave:" + uid)
	return r.leaveErr
}
func (r *recorder) EndSessions(uid string) { r.add("end:" + uid) }
func (r *recorder) ForgetUser(uid string)  { r.add("forget:" + uid) }

func setup(t *testing.T) (*Service, *recorder, store.Store) {
	t.Helper()
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, u := range []store.User{
		{ID: "u1", Username: "alice", PasswordHash: []byte("h"), CreatedAt: time.Now()},
		{ID: "u2", Username: "bob", PasswordHash: []byte("h"), CreatedAt: time.Now()},
	} {
		if err := st.CreateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{password: "right"}
	return New(Options{Store: st, Passwords: r, Memberships: r, Sessions: r, Recipients: r}), r, st
}

func TestSetDisabled(t *testing.T) {
	tests := []struct {
		name      string
		who       string
		disabled  bool
		wantState string
		wantErr   error
		wantCalls []string
	}{
		{"disable by username ends sessions", "alice", true, "disabled", nil, []string{"end:u1"}},
		{"disable by id", "u2", true, "disabled", nil, []string{"end:u2"}},
		{"enable ends nothing", "alice", false, "active", nil, nil},
		{"unknown", "nobody", true, "", ErrUnknownUser, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, r, st := setup(t)
			got, err := s.SetDisabled(t.Context(), tc.who, tc.disabled)
			if !errors.Is(err, tc.wantErr) || got.State != tc.wantState {
				t.Fatalf("SetDisabled = %+v, %v; want state %q, %v", got, err, tc.wantState, tc.wantErr)
			}
			if !slices.Equal(r.calls, tc.wantCalls) {
				t.Fatalf("calls %v, want %v", r.calls, tc.wantCalls)
			}
			if err == nil {
				u, _ := st.UserByID(t.Context(), got.UserID)
				if u.Disabled != tc.disabled {
					t.Fatalf("stored Disabled = %v", u.Disabled)
				}
			}
		})
	}
}

func TestDeleteOwnChecksPasswordFirst(t *testing.T) {
	s, r, st := setup(t)
	if err := s.DeleteOwn(t.Context(), "u1", "wrong"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("DeleteOwn with a wrong password: %v", err)
	}
	if u, _ := st.UserByID(t.Context(), "u1"); !u.Active() || len(r.calls) != 1 {
		t.Fatalf("a refused delete changed %+v or called %v", u, r.calls)
	}
	if err := s.DeleteOwn(t.Context(), "u1", "right"); err != nil {
		t.Fatal(err)
	}
	want := []string{"check:u1", "check:u1", "end:u1", "leave:u1", "leave:u1", "forget:u1"}
	if !slices.Equal(r.calls, want) {
		t.Fatalf("calls %v, want %v", r.calls, want)
	}
	if u, _ := st.UserByID(t.Context(), "u1"); !u.Deleted() || u.Disabled || len(u.PasswordHash) != 0 {
		t.Fatalf("after delete: %+v", u)
	}
}

// A deletion that fails half-way leaves the account disabled, not live and
// not half-deleted; deleting it again finishes it.
func TestDeleteResumes(t *testing.T) {
	s, r, st := setup(t)
	r.leaveErr = errors.New("store down")
	if _, err := s.Delete(t.Context(), "bob"); err == nil {
		t.Fatal("Delete succeeded with LeaveAll failing")
	}
	if u, _ := st.UserByID(t.Context(), "u2"); !u.Disabled || u.Deleted() {
		t.Fatalf("after a failed delete: %+v, want disabled, not deleted", u)
	}
	r.leaveErr = nil
	got, err := s.Delete(t.Context(), "bob")
	if err != nil || got.State != "deleted" || got.DeletedAt == nil {
		t.Fatalf("second Delete = %+v, %v", got, err)
	}
	// Once more is harmless and still says deleted; an unknown user is not.
	if got, err := s.Delete(t.Context(), "bob"); err != nil || got.State != "deleted" {
		t.Fatalf("Delete of a deleted account = %+v, %v", got, err)
	}
	if _, err := s.Delete(t.Context(), "nobody"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("Delete(nobody) = %v", err)
	}
	list, err := s.List(t.Context(), "", 10)
	if err != nil || len(list) != 2 || list[0].State != "active" || list[1].State != "deleted" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}
