package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func userTests() []testCase {
	return []testCase{
		{"CreateAndGet", testUserCreateAndGet},
		{"FieldsRoundTrip", testUserFieldsRoundTrip},
		{"UsernameLookupIsExact", testUsernameExact},
		{"DuplicateID", testUserDuplicateID},
		{"DuplicateUsername", testUserDuplicateUsername},
		{"NotFound", testUserNotFound},
		{"ConcurrentSameUsername", testUserConcurrentSameUsername},
	}
}

func newUser(id, username string) store.User {
	return store.User{
		ID:           id,
		Username:     username,
		PasswordHash: []byte("$argon2id$v=19$" + id),
		CreatedAt:    time.Now().Truncate(time.Millisecond),
	}
}

func checkUser(t *testing.T, what string, got, want store.User) {
	t.Helper()
	if got.ID != want.ID || got.Username != want.Username ||
		!bytes.Equal(got.PasswordHash, want.PasswordHash) || !sameInstant(got.CreatedAt, want.CreatedAt) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func mustCreateUser(t *testing.T, s store.Store, u store.User) {
	t.Helper()
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", u.Username, err)
	}
}

func testUserCreateAndGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice, bob := newUser("01HZALICE", "alice"), newUser("01HZBOB", "bob")
	mustCreateUser(t, s, alice)
	mustCreateUser(t, s, bob)
	for _, want := range []store.User{alice, bob} {
		got, err := s.UserByID(ctx, want.ID)
		if err != nil {
			t.Fatalf("UserByID(%q): %v", want.ID, err)
		}
		checkUser(t, "UserByID", got, want)
		got, err = s.UserByUsername(ctx, want.Username)
		if err != nil {
			t.Fatalf("UserByUsername(%q): %v", want.Username, err)
		}
		checkUser(t, "UserByUsername", got, want)
	}
}

func testUserFieldsRoundTrip(t *testing.T, s store.Store) {
	// Binary hash bytes, a sub-millisecond CreatedAt in a non-UTC zone.
	u := store.User{
		ID:           "u-round-trip",
		Username:     "zoë",
		PasswordHash: []byte{0x00, 0x01, 0xfe, 0xff, '$', 0x00},
		CreatedAt:    time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("X", 5*3600+1800)),
	}
	mustCreateUser(t, s, u)
	got, err := s.UserByID(t.Context(), u.ID)
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	checkUser(t, "UserByID", got, u)
	if got, err = s.UserByUsername(t.Context(), u.Username); err != nil {
		t.Fatalf("UserByUsername: %v", err)
	}
	checkUser(t, "UserByUsername", got, u)
}

// The caller lower-cases usernames; the store matches the stored bytes only.
func testUsernameExact(t *testing.T, s store.Store) {
	mustCreateUser(t, s, newUser("u1", "alice"))
	for _, name := range []string{"Alice", "ALICE", "alic", "alice ", " alice", "alicex", ""} {
		if _, err := s.UserByUsername(t.Context(), name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByUsername(%q): err = %v, want ErrNotFound", name, err)
		}
	}
}

func testUserDuplicateID(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := newUser("u1", "alice")
	mustCreateUser(t, s, first)
	err := s.CreateUser(ctx, newUser("u1", "bob"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateUser with taken id: err = %v, want ErrConflict", err)
	}
	// The failed create must not have claimed the new username.
	if _, err := s.UserByUsername(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByUsername(bob) after conflict: err = %v, want ErrNotFound", err)
	}
	got, err := s.UserByID(ctx, "u1")
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	checkUser(t, "first user after conflict", got, first)
}

func testUserDuplicateUsername(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := newUser("u1", "alice")
	mustCreateUser(t, s, first)
	err := s.CreateUser(ctx, newUser("u2", "alice"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateUser with taken username: err = %v, want ErrConflict", err)
	}
	if _, err := s.UserByID(ctx, "u2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByID(u2) after conflict: err = %v, want ErrNotFound", err)
	}
	got, err := s.UserByUsername(ctx, "alice")
	if err != nil {
		t.Fatalf("UserByUsername: %v", err)
	}
	checkUser(t, "first user after conflict", got, first)
}

func testUserNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Both on an empty store and next to an existing user.
	for _, seed := range []bool{false, true} {
		if seed {
			mustCreateUser(t, s, newUser("u1", "alice"))
		}
		if _, err := s.UserByID(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByID(nobody), seeded=%v: err = %v, want ErrNotFound", seed, err)
		}
		if _, err := s.UserByUsername(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByUsername(nobody), seeded=%v: err = %v, want ErrNotFound", seed, err)
		}
	}
}

// Signups race on popular names; exactly one per name may win. All
// goroutines are released at once and several names are contested, so a
// check-then-write gap is hit reliably.
func testUserConcurrentSameUsername(t *testing.T, s store.Store) {
	const names, contenders = 10, 8
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [names][contenders]error
	)
	for c := range contenders {
		for n := range names {
			wg.Go(func() {
				<-start
				u := newUser(fmt.Sprintf("u%d-%d", n, c), fmt.Sprintf("popular%d", n))
				errs[n][c] = s.CreateUser(t.Context(), u)
			})
		}
	}
	close(start)
	wg.Wait()
	for n := range names {
		name, winner := fmt.Sprintf("popular%d", n), -1
		for c, err := range errs[n] {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("CreateUser: both u%d-%d and u%d-%d got username %s", n, winner, n, c, name)
			case err == nil:
				winner = c
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("CreateUser(u%d-%d): err = %v, want nil or ErrConflict", n, c, err)
			}
		}
		if winner < 0 {
			t.Fatalf("CreateUser: nobody won username %s", name)
		}
		got, err := s.UserByUsername(t.Context(), name)
		if err != nil {
			t.Fatalf("UserByUsername(%s): %v", name, err)
		}
		if want := fmt.Sprintf("u%d-%d", n, winner); got.ID != want {
			t.Fatalf("UserByUsername(%s).ID = %q, want winner %q", name, got.ID, want)
		}
	}
}
