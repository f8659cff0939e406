package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func sessionTests() []testCase {
	return []testCase{
		{"CreateAndGet", testSessionCreateAndGet},
		{"DuplicateID", testSessionDuplicateID},
		{"NotFound", testSessionNotFound},
		{"Rotate", testSessionRotate},
		{"ConcurrentRotation", testSessionConcurrentRotation},
		{"Delete", testSessionDelete},
		{"DeleteUserSessions", testSessionDeleteUser},
		{"SetPasswordHash", testSetPasswordHash},
		{"CanceledContext", testSessionCanceledContext},
	}
}

// A call made with a dead context fails with that context's error, so a
// refresh during shutdown is not mistaken for a reused token.
func testSessionCanceledContext(t *testing.T, s store.Store) {
	sess := newSession("s-ctx", "ann")
	mustCreateSession(t, s, sess)
	mustCreateUser(t, s, newUser("01HZCTX", "cathy"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	now := time.Now()
	ops := []struct {
		name string
		call func() error
	}{
		{"CreateSession", func() error { return s.CreateSession(ctx, newSession("s-ctx2", "ann")) }},
		{"Session", func() error { _, err := s.Session(ctx, sess.ID); return err }},
		{"RotateSession", func() error { return s.RotateSession(ctx, sess.ID, sess.RefreshID, "r-next", now, now) }},
		{"DeleteSession", func() error { return s.DeleteSession(ctx, sess.ID) }},
		{"DeleteUserSessions", func() error { _, err := s.DeleteUserSessions(ctx, "ann", ""); return err }},
		{"UserSessions", func() error { _, err := s.UserSessions(ctx, "ann"); return err }},
		{"SetPasswordHash", func() error { return s.SetPasswordHash(ctx, "01HZCTX", []byte("x")) }},
	}
	for _, op := range ops {
		if err := op.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", op.name, err)
		}
	}
	checkSession(t, s, sess) // nothing changed
}

func newSession(id, uid string) store.Session {
	now := time.Now().Truncate(time.Millisecond)
	return store.Session{
		ID: id, UserID: uid, Label: "phone of " + uid, RefreshID: "r-" + id,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour),
	}
}

func mustCreateSession(t *testing.T, s store.Store, sess store.Session) {
	t.Helper()
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession(%q): %v", sess.ID, err)
	}
}

func sessionDiff(got, want store.Session) string {
	if got.ID != want.ID || got.UserID != want.UserID || got.Label != want.Label || got.RefreshID != want.RefreshID ||
		!sameInstant(got.CreatedAt, want.CreatedAt) || !sameInstant(got.LastUsedAt, want.LastUsedAt) ||
		!sameInstant(got.ExpiresAt, want.ExpiresAt) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}

func checkSession(t *testing.T, s store.Store, want store.Session) {
	t.Helper()
	got, err := s.Session(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("Session(%q): %v", want.ID, err)
	}
	if d := sessionDiff(got, want); d != "" {
		t.Fatalf("Session(%q): %s", want.ID, d)
	}
}

func sessionIDs(t *testing.T, s store.Store, uid string) []string {
	t.Helper()
	list, err := s.UserSessions(t.Context(), uid)
	if err != nil {
		t.Fatalf("UserSessions(%q): %v", uid, err)
	}
	ids := make([]string, len(list))
	for i, sess := range list {
		ids[i] = sess.ID
		if sess.UserID != uid {
			t.Fatalf("UserSessions(%q) returned %+v of another user", uid, sess)
		}
	}
	return ids
}

func testSessionCreateAndGet(t *testing.T, s store.Store) {
	a1, a2, b1 := newSession("s-a1", "ann"), newSession("s-a2", "ann"), newSession("s-b1", "bob")
	a2.Label = "" // a login without a label
	for _, sess := range []store.Session{a2, b1, a1} {
		mustCreateSession(t, s, sess)
	}
	for _, want := range []store.Session{a1, a2, b1} {
		checkSession(t, s, want)
	}
	list, err := s.UserSessions(t.Context(), "ann")
	if err != nil {
		t.Fatalf("UserSessions: %v", err)
	}
	if len(list) != 2 || sessionDiff(list[0], a1) != "" || sessionDiff(list[1], a2) != "" {
		t.Fatalf("UserSessions(ann) = %+v, want [%+v %+v] in id order", list, a1, a2)
	}
	if got := sessionIDs(t, s, "nobody"); got == nil || len(got) != 0 {
		t.Fatalf("UserSessions(nobody) = %#v, want empty", got)
	}
}

func testSessionDuplicateID(t *testing.T, s store.Store) {
	first := newSession("s-dup", "ann")
	mustCreateSession(t, s, first)
	second := newSession("s-dup", "bob")
	if err := s.CreateSession(t.Context(), second); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateSession with a taken id: %v, want ErrConflict", err)
	}
	checkSession(t, s, first)
	if got := sessionIDs(t, s, "bob"); len(got) != 0 {
		t.Fatalf("the refused session is listed for bob: %v", got)
	}
}

func testSessionNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.Session(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Session(missing): %v, want ErrNotFound", err)
	}
	now := time.Now()
	if err := s.RotateSession(ctx, "missing", "a", "b", now, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RotateSession(missing): %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteSession(missing): %v, want ErrNotFound", err)
	}
}

// A rotation names the refresh token it replaces: once replaced, that
// token can never rotate the session again.
func testSessionRotate(t *testing.T, s store.Store) {
	ctx := t.Context()
	sess := newSession("s-rot", "ann")
	mustCreateSession(t, s, sess)
	used := sess.CreatedAt.Add(time.Minute)
	expires := used.Add(48 * time.Hour)
	if err := s.RotateSession(ctx, sess.ID, sess.RefreshID, "r-2", used, expires); err != nil {
		t.Fatalf("RotateSession: %v", err)
	}
	want := sess
	want.RefreshID, want.LastUsedAt, want.ExpiresAt = "r-2", used, expires
	checkSession(t, s, want)

	if err := s.RotateSession(ctx, sess.ID, sess.RefreshID, "r-3", used.Add(time.Minute), expires); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("RotateSession with the replaced refresh id: %v, want ErrConflict", err)
	}
	checkSession(t, s, want) // the refused rotation changed nothing
	if err := s.RotateSession(ctx, sess.ID, "r-2", "r-3", used, expires); err != nil {
		t.Fatalf("RotateSession with the current refresh id: %v", err)
	}
}

// Concurrent rotations presenting the same refresh token: exactly one
// wins, every other one is told it lost, and the winner's id is stored.
func testSessionConcurrentRotation(t *testing.T, s store.Store) {
	sess := newSession("s-race", "ann")
	mustCreateSession(t, s, sess)
	const n = 16
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			now := time.Now()
			results[i] = s.RotateSession(t.Context(), sess.ID, sess.RefreshID, fmt.Sprintf("r-win-%d", i), now, now.Add(time.Hour))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("rotations %d and %d both succeeded with the same refresh id", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("rotation %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no rotation succeeded")
	}
	got, err := s.Session(t.Context(), sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("r-win-%d", winner); got.RefreshID != want {
		t.Fatalf("RefreshID = %q, want the winner's %q", got.RefreshID, want)
	}
}

func testSessionDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	a1, a2 := newSession("s-d1", "ann"), newSession("s-d2", "ann")
	mustCreateSession(t, s, a1)
	mustCreateSession(t, s, a2)
	if err := s.DeleteSession(ctx, a1.ID); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if _, err := s.Session(ctx, a1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Session after delete: %v, want ErrNotFound", err)
	}
	now := time.Now()
	if err := s.RotateSession(ctx, a1.ID, a1.RefreshID, "r-x", now, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RotateSession of a deleted session: %v, want ErrNotFound", err)
	}
	if got := sessionIDs(t, s, "ann"); !slices.Equal(got, []string{a2.ID}) {
		t.Fatalf("UserSessions after delete = %v, want [%s]", got, a2.ID)
	}
}

func testSessionDeleteUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, sess := range []store.Session{
		newSession("s-u1", "ann"), newSession("s-u2", "ann"), newSession("s-u3", "ann"), newSession("s-u4", "bob"),
	} {
		mustCreateSession(t, s, sess)
	}
	gone, err := s.DeleteUserSessions(ctx, "ann", "s-u2")
	if err != nil {
		t.Fatalf("DeleteUserSessions(keep s-u2): %v", err)
	}
	slices.Sort(gone)
	if !slices.Equal(gone, []string{"s-u1", "s-u3"}) {
		t.Fatalf("DeleteUserSessions returned %v, want [s-u1 s-u3]", gone)
	}
	if got := sessionIDs(t, s, "ann"); !slices.Equal(got, []string{"s-u2"}) {
		t.Fatalf("ann's sessions = %v, want [s-u2]", got)
	}
	for _, id := range []string{"s-u1", "s-u3"} {
		if _, err := s.Session(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Session(%s) after DeleteUserSessions: %v, want ErrNotFound", id, err)
		}
	}
	gone, err = s.DeleteUserSessions(ctx, "ann", "")
	if err != nil || !slices.Equal(gone, []string{"s-u2"}) {
		t.Fatalf("DeleteUserSessions(keep none) = %v, %v; want [s-u2]", gone, err)
	}
	if got := sessionIDs(t, s, "bob"); !slices.Equal(got, []string{"s-u4"}) {
		t.Fatalf("bob's sessions = %v, want [s-u4] untouched", got)
	}
	gone, err = s.DeleteUserSessions(ctx, "nobody", "")
	if err != nil || len(gone) != 0 {
		t.Fatalf("DeleteUserSessions(nobody) = %v, %v; want nothing", gone, err)
	}
}

func testSetPasswordHash(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := newUser("01HZPASS", "pat")
	mustCreateUser(t, s, u)
	u.PasswordHash = []byte("$2a$04$new-hash")
	if err := s.SetPasswordHash(ctx, u.ID, u.PasswordHash); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	for _, get := range []func() (store.User, error){
		func() (store.User, error) { return s.UserByID(ctx, u.ID) },
		func() (store.User, error) { return s.UserByUsername(ctx, u.Username) },
	} {
		got, err := get()
		if err != nil {
			t.Fatal(err)
		}
		checkUser(t, "after SetPasswordHash", got, u)
	}
	if err := s.SetPasswordHash(ctx, "01HZNOBODY", []byte("x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPasswordHash(unknown user): %v, want ErrNotFound", err)
	}
}
