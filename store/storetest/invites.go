package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func inviteTests() []testCase {
	return []testCase{
		{"PutListDelete", testInvitePutListDelete},
		{"PutKeepsFirst", testInvitePutKeepsFirst},
		{"CanceledContext", testInviteCanceled},
	}
}

func checkInvites(t *testing.T, s store.Store, uid string, want ...store.GroupInvite) {
	t.Helper()
	got, err := s.InvitesOf(t.Context(), uid)
	if err != nil {
		t.Fatalf("InvitesOf(%q): %v", uid, err)
	}
	if got == nil || len(got) != len(want) {
		t.Fatalf("InvitesOf(%q) = %#v, want %+v", uid, got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.UserID != w.UserID || g.GroupID != w.GroupID || g.From != w.From || !sameInstant(g.CreatedAt, w.CreatedAt) {
			t.Fatalf("InvitesOf(%q)[%d] = %+v, want %+v", uid, i, g, w)
		}
	}
}

func testInvitePutListDelete(t *testing.T, s store.Store) {
	at := time.Now().Truncate(time.Millisecond)
	r1 := store.GroupInvite{UserID: "u1", GroupID: "g3", From: "u3", CreatedAt: at}
	r2 := store.GroupInvite{UserID: "u1", GroupID: "g2", From: "u2", CreatedAt: at.Add(time.Second)}
	for _, r := range []store.GroupInvite{r1, r2} {
		if err := s.PutInvite(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	checkInvites(t, s, "u1", r2, r1)
	checkInvites(t, s, "u2")
	checkInvites(t, s, "u")
	if ok, err := s.DeleteInvite(t.Context(), "u1", r2.GroupID); err != nil || !ok {
		t.Fatalf("DeleteInvite = %v, %v; want true", ok, err)
	}
	if ok, err := s.DeleteInvite(t.Context(), "u1", r2.GroupID); err != nil || ok {
		t.Fatalf("second DeleteInvite = %v, %v; want false", ok, err)
	}
	if ok, err := s.DeleteInvite(t.Context(), "u2", r1.GroupID); err != nil || ok {
		t.Fatalf("DeleteInvite of another user's = %v, %v; want false", ok, err)
	}
	checkInvites(t, s, "u1", r1)
}

func testInvitePutKeepsFirst(t *testing.T, s store.Store) {
	r := store.GroupInvite{UserID: "u1", GroupID: "g2", From: "u2", CreatedAt: time.Now().Truncate(time.Millisecond)}
	if err := s.PutInvite(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	again := r
	again.CreatedAt = r.CreatedAt.Add(time.Hour)
	if err := s.PutInvite(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	checkInvites(t, s, "u1", r)
}

func testInviteCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := store.GroupInvite{UserID: "u1", GroupID: "g2", From: "u2", CreatedAt: time.Now()}
	if err := s.PutInvite(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutInvite with a cancelled context = %v", err)
	}
	if _, err := s.InvitesOf(ctx, "u1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("InvitesOf with a cancelled context = %v", err)
	}
	if _, err := s.DeleteInvite(ctx, "u1", r.GroupID); !errors.Is(err, context.Canceled) {
		t.Fatalf("DeleteInvite with a cancelled context = %v", err)
	}
	checkInvites(t, s, "u1")
}
