package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func privacyTests() []testCase {
	return []testCase{
		{"NotFoundUntilSet", testPrivacyNotFound},
		{"PutReplaces", testPrivacyPutReplaces},
		{"PerUser", testPrivacyPerUser},
		{"CanceledContext", testPrivacyCanceled},
	}
}

func checkPrivacy(t *testing.T, s store.Store, want store.Privacy) {
	t.Helper()
	got, err := s.Privacy(t.Context(), want.UserID)
	if err != nil {
		t.Fatalf("Privacy(%q): %v", want.UserID, err)
	}
	if got.UserID != want.UserID || got.Presence != want.Presence || got.RequestPush != want.RequestPush ||
		!sameInstant(got.UpdatedAt, want.UpdatedAt) {
		t.Fatalf("Privacy(%q) = %+v, want %+v", want.UserID, got, want)
	}
}

func testPrivacyNotFound(t *testing.T, s store.Store) {
	if _, err := s.Privacy(t.Context(), "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Privacy of a user who never set it = %v, want ErrNotFound", err)
	}
}

func testPrivacyPutReplaces(t *testing.T, s store.Store) {
	at := time.Now().Truncate(time.Millisecond)
	p := store.Privacy{UserID: "u1", Presence: store.PresenceNobody, UpdatedAt: at}
	if err := s.PutPrivacy(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	checkPrivacy(t, s, p)
	p.Presence, p.RequestPush, p.UpdatedAt = store.PresenceContacts, true, at.Add(time.Minute)
	if err := s.PutPrivacy(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	checkPrivacy(t, s, p)
}

func testPrivacyPerUser(t *testing.T, s store.Store) {
	p := store.Privacy{UserID: "u1", Presence: store.PresenceNobody, UpdatedAt: time.Now().Truncate(time.Millisecond)}
	if err := s.PutPrivacy(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"u", "u10", "u2"} {
		if _, err := s.Privacy(t.Context(), other); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Privacy(%q) = %v, want ErrNotFound", other, err)
		}
	}
}

func testPrivacyCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := store.Privacy{UserID: "u1", Presence: store.PresenceNobody, UpdatedAt: time.Now()}
	if err := s.PutPrivacy(ctx, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutPrivacy with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Privacy(ctx, "u1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Privacy with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Privacy(t.Context(), "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a cancelled PutPrivacy stored something: %v", err)
	}
}
