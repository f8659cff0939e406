package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func profileTests() []testCase {
	return []testCase{
		{"NoneSavedIsNotFound", testProfileNoneSaved},
		{"PutAndReadBack", testProfilePutAndRead},
		{"PutReplaces", testProfileReplace},
		{"UnknownUserIsNotFound", testProfileUnknownUser},
		{"HostileText", testProfileHostileText},
		{"CanceledContext", testProfileCanceled},
	}
}

func addUser(t *testing.T, s store.Store, id, name string) {
	t.Helper()
	if err := s.CreateUser(t.Context(), store.User{ID: id, Username: name, PasswordHash: []byte("h"), CreatedAt: time.Now()}); err != nil {
		t.Fatalf("CreateUser(%s): %v", id, err)
	}
}

func checkProfile(t *testing.T, s store.Store, want store.Profile) {
	t.Helper()
	got, err := s.Profile(t.Context(), want.UserID)
	if err != nil {
		t.Fatalf("Profile(%q): %v", want.UserID, err)
	}
	if got.UserID != want.UserID || got.DisplayName != want.DisplayName || got.About != want.About ||
		got.Avatar != want.Avatar || got.Discoverable != want.Discoverable || !sameInstant(got.UpdatedAt, want.UpdatedAt) {
		t.Fatalf("Profile(%q) = %+v, want %+v", want.UserID, got, want)
	}
}

func testProfileNoneSaved(t *testing.T, s store.Store) {
	addUser(t, s, "u1", "ann")
	for _, uid := range []string{"u1", "nobody"} {
		if _, err := s.Profile(t.Context(), uid); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Profile(%q) before any put: err = %v, want ErrNotFound", uid, err)
		}
	}
}

func testProfilePutAndRead(t *testing.T, s store.Store) {
	addUser(t, s, "u1", "ann")
	addUser(t, s, "u2", "bob")
	now := time.Now().Truncate(time.Millisecond)
	ann := store.Profile{UserID: "u1", DisplayName: "Ann Émile 🌍", About: "line one, line two", Avatar: "https://cdn.example/a.png", Discoverable: false, UpdatedAt: now}
	bob := store.Profile{UserID: "u2", Discoverable: true, UpdatedAt: now.Add(time.Second)}
	for _, p := range []store.Profile{ann, bob} {
		if err := s.PutProfile(t.Context(), p); err != nil {
			t.Fatalf("PutProfile(%s): %v", p.UserID, err)
		}
	}
	checkProfile(t, s, ann)
	checkProfile(t, s, bob)
}

func testProfileReplace(t *testing.T, s store.Store) {
	addUser(t, s, "u1", "ann")
	now := time.Now().Truncate(time.Millisecond)
	first := store.Profile{UserID: "u1", DisplayName: "Ann", About: "hi", Avatar: "a1", Discoverable: true, UpdatedAt: now}
	second := store.Profile{UserID: "u1", DisplayName: "", About: "", Avatar: "a2", Discoverable: false, UpdatedAt: now.Add(time.Minute)}
	for _, p := range []store.Profile{first, second} {
		if err := s.PutProfile(t.Context(), p); err != nil {
			t.Fatalf("PutProfile: %v", err)
		}
	}
	checkProfile(t, s, second)
}

func testProfileUnknownUser(t *testing.T, s store.Store) {
	err := s.PutProfile(t.Context(), store.Profile{UserID: "ghost", DisplayName: "x", UpdatedAt: time.Now()})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutProfile for an unknown user: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Profile(t.Context(), "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Profile after refused put: err = %v, want ErrNotFound", err)
	}
}

// Text the service lets through (any valid UTF-8 without control
// characters, quotes and SQL metacharacters included) comes back unchanged.
func testProfileHostileText(t *testing.T, s store.Store) {
	addUser(t, s, "u1", "ann")
	p := store.Profile{UserID: "u1", DisplayName: `Robert'); DROP TABLE users;--`, About: "\"\\ %_ ${x} \U0001D54F \u200b",
		Avatar: "mxc://example.org/abc?x=1&y='2'", Discoverable: true, UpdatedAt: time.Now().Truncate(time.Millisecond)}
	if err := s.PutProfile(t.Context(), p); err != nil {
		t.Fatalf("PutProfile: %v", err)
	}
	checkProfile(t, s, p)
}

func testProfileCanceled(t *testing.T, s store.Store) {
	addUser(t, s, "u1", "ann")
	if err := s.PutProfile(t.Context(), store.Profile{UserID: "u1", UpdatedAt: time.Now()}); err != nil {
		t.Fatalf("PutProfile: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.PutProfile(ctx, store.Profile{UserID: "u1", UpdatedAt: time.Now()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutProfile with canceled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.Profile(ctx, "u1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Profile with canceled context: err = %v, want context.Canceled", err)
	}
}
