package auth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
)

// closed records what the service asked the connection registry to close.
type closed struct {
	mu   sync.Mutex
	sids map[string][]string // by user
}

func (c *closed) CloseSessions(uid string, sids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sids == nil {
		c.sids = map[string][]string{}
	}
	c.sids[uid] = append(c.sids[uid], sids...)
}

func (c *closed) of(uid string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.sids[uid])
	slices.Sort(out)
	return out
}

func (f *fixture) withCloser() *closed {
	c := &closed{}
	f.svc.SetSessionCloser(c)
	return c
}

func wantRefused(t *testing.T, f *fixture, what string, tok auth.Tokens) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("%s: access token: %v, want ErrInvalidToken", what, err)
	}
	if _, err := f.svc.Refresh(ctx, tok.RefreshToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("%s: refresh token: %v, want ErrInvalidToken", what, err)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newFixture(t)
	cl := f.withCloser()
	ctx := context.Background()
	first := f.register(t, "alice")
	other, err := f.svc.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	if second.SessionID != first.SessionID {
		t.Fatalf("refresh moved to session %q from %q", second.SessionID, first.SessionID)
	}
	// The thief replays the rotated token: refused, and the family dies,
	// the legitimate holder's newest tokens included.
	if _, err := f.svc.Refresh(ctx, first.RefreshToken); !errors.Is(err, auth.ErrRefreshReused) {
		t.Fatalf("replayed refresh token: %v, want ErrRefreshReused", err)
	}
	wantRefused(t, f, "after reuse", second)
	if got := cl.of(first.UserID); !slices.Equal(got, []string{first.SessionID}) {
		t.Fatalf("closed sessions = %v, want [%s]", got, first.SessionID)
	}
	// The user's other login is another family and keeps working.
	f.checkTokens(t, other, first.UserID, accessTTL)
	if _, err := f.svc.Refresh(ctx, other.RefreshToken); err != nil {
		t.Fatalf("other session's refresh: %v", err)
	}
}

func TestConcurrentRefreshOneWins(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := f.register(t, "alice")
	const n = 8
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.svc.Refresh(ctx, tok.RefreshToken)
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, auth.ErrInvalidToken):
			t.Fatalf("refresh: %v", err)
		}
	}
	if wins > 1 {
		t.Fatalf("%d refreshes with one token succeeded", wins)
	}
	// Every loser saw a reuse, so the family is revoked.
	if _, err := f.svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("access token after a refresh race: %v, want ErrInvalidToken", err)
	}
}

func TestLogoutAndRevokeAll(t *testing.T) {
	f := newFixture(t)
	cl := f.withCloser()
	ctx := context.Background()
	a1 := f.register(t, "alice")
	a2, _ := f.svc.Login(ctx, "alice", goodPassword)
	a3, _ := f.svc.Login(ctx, "alice", goodPassword)
	bob := f.register(t, "bob")

	if err := f.svc.Logout(ctx, bob.UserID, a1.SessionID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("logging out another user's session: %v, want ErrSessionNotFound", err)
	}
	f.checkTokens(t, a1, a1.UserID, accessTTL)
	if err := f.svc.Logout(ctx, a1.UserID, a1.SessionID); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	wantRefused(t, f, "logged out", a1)
	if err := f.svc.Logout(ctx, a1.UserID, a1.SessionID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("second logout: %v, want ErrSessionNotFound", err)
	}
	list, err := f.svc.Sessions(ctx, a1.UserID, a2.SessionID)
	if err != nil || len(list) != 2 {
		t.Fatalf("Sessions = %+v, %v; want 2", list, err)
	}
	for _, s := range list {
		if s.Current != (s.ID == a2.SessionID) {
			t.Fatalf("session %+v: Current wrong (current is %s)", s, a2.SessionID)
		}
	}
	if err := f.svc.RevokeAll(ctx, a1.UserID); err != nil {
		t.Fatalf("RevokeAll: %v", err)
	}
	wantRefused(t, f, "after RevokeAll", a2)
	wantRefused(t, f, "after RevokeAll", a3)
	want := []string{a1.SessionID, a2.SessionID, a3.SessionID}
	slices.Sort(want)
	if got := cl.of(a1.UserID); !slices.Equal(got, want) {
		t.Fatalf("closed = %v, want %v", got, want)
	}
	f.checkTokens(t, bob, bob.UserID, accessTTL)
}

func TestChangePassword(t *testing.T) {
	f := newFixture(t)
	cl := f.withCloser()
	ctx := context.Background()
	here := f.register(t, "alice")
	there, _ := f.svc.Login(ctx, "alice", goodPassword)
	const newPassword = "a new and better one"

	if _, err := f.svc.ChangePassword(ctx, here.UserID, here.SessionID, "wrong password", newPassword); !errors.Is(err, auth.ErrWrongPassword) {
		t.Fatalf("wrong old password: %v, want ErrWrongPassword", err)
	}
	_, err := f.svc.ChangePassword(ctx, here.UserID, here.SessionID, goodPassword, "short")
	wantInputError(t, err, "password")
	f.checkTokens(t, there, here.UserID, accessTTL) // refused changes revoke nothing

	fresh, err := f.svc.ChangePassword(ctx, here.UserID, here.SessionID, goodPassword, newPassword)
	if err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	f.checkTokens(t, fresh, here.UserID, accessTTL)
	if fresh.SessionID != here.SessionID {
		t.Fatalf("fresh tokens are for session %q, want %q", fresh.SessionID, here.SessionID)
	}
	wantRefused(t, f, "other session after a password change", there)
	if got := cl.of(here.UserID); !slices.Equal(got, []string{there.SessionID}) {
		t.Fatalf("closed = %v, want only the other session", got)
	}
	// This session's older refresh token was rotated away.
	if _, err := f.svc.Refresh(ctx, fresh.RefreshToken); err != nil {
		t.Fatalf("refresh with the fresh token: %v", err)
	}
	if _, err := f.svc.Login(ctx, "alice", goodPassword); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login with the old password: %v", err)
	}
	if _, err := f.svc.Login(ctx, "alice", newPassword); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
}

func TestSessionsPrunedAtLogin(t *testing.T) {
	f := newFixture(t)
	cl := f.withCloser()
	ctx := context.Background()
	first := f.register(t, "alice")
	// An expired session is deleted by the next login.
	f.clock.Advance(refreshTTL + time.Minute)
	used, err := f.svc.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Session(ctx, first.SessionID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session after a login: %v, want ErrNotFound", err)
	}
	// Past MaxSessions live ones, the least recently used goes: not the
	// oldest login (used refreshes), the oldest use.
	f.clock.Advance(time.Second)
	lru, err := f.svc.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	for range auth.MaxSessions - 2 {
		f.clock.Advance(time.Second)
		if _, err := f.svc.Login(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	used, err = f.svc.Refresh(ctx, used.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.store.UserSessions(ctx, first.UserID)
	if err != nil || len(list) != auth.MaxSessions {
		t.Fatalf("%d sessions (%v), want %d", len(list), err, auth.MaxSessions)
	}
	if got := cl.of(first.UserID); len(got) != 0 {
		t.Fatalf("sessions closed before the limit: %v", got)
	}
	if _, err := f.svc.Login(ctx, "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	if got := cl.of(first.UserID); !slices.Equal(got, []string{lru.SessionID}) {
		t.Fatalf("closed %v, want the least recently used %s", got, lru.SessionID)
	}
	wantRefused(t, f, "evicted session", lru)
	f.checkTokens(t, used, first.UserID, accessTTL)
	if list, _ = f.store.UserSessions(ctx, first.UserID); len(list) != auth.MaxSessions {
		t.Fatalf("%d sessions after eviction, want %d", len(list), auth.MaxSessions)
	}
}

func TestSessionLabel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.register(t, "alice")
	tests := []struct {
		name, label, want string
	}{
		{"plain", "MyChat/2.1 (Android 14; Pixel 8)", "MyChat/2.1 (Android 14; Pixel 8)"},
		{"none", "", ""},
		{"control characters dropped", "evil\x00\r\nlabel\x1b[31m", "evillabel[31m"},
		{"invalid UTF-8 dropped", "caf\xc3\xa9 \xff\xfeok", "café ok"},
		{"cut to 64 characters", strings.Repeat("é", 100), strings.Repeat("é", 64)},
		{"spaces trimmed", "  phone  ", "phone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := f.svc.Login(auth.WithLabel(ctx, tc.label), "alice", goodPassword)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := f.store.Session(ctx, tok.SessionID)
			if err != nil {
				t.Fatal(err)
			}
			if sess.Label != tc.want {
				t.Fatalf("label = %q, want %q", sess.Label, tc.want)
			}
		})
	}
	tok, err := f.svc.IssueTokens(ctx, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if sess, _ := f.store.Session(ctx, tok.SessionID); sess.Label != "operator" {
		t.Fatalf("operator-issued session label = %q, want operator", sess.Label)
	}
}
