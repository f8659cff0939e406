package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func requestTests() []testCase {
	return []testCase{
		{"PutListDelete", testRequestPutListDelete},
		{"PutKeepsFirst", testRequestPutKeepsFirst},
		{"CanceledContext", testRequestCanceled},
	}
}

func checkRequests(t *testing.T, s store.Store, uid string, want ...store.DirectRequest) {
	t.Helper()
	got, err := s.RequestsOf(t.Context(), uid)
	if err != nil {
		t.Fatalf("RequestsOf(%q): %v", uid, err)
	}
	if got == nil || len(got) != len(want) {
		t.Fatalf("RequestsOf(%q) = %#v, want %+v", uid, got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.UserID != w.UserID || g.Chat != w.Chat || g.From != w.From || !sameInstant(g.CreatedAt, w.CreatedAt) {
			t.Fatalf("RequestsOf(%q)[%d] = %+v, want %+v", uid, i, g, w)
		}
	}
}

func testRequestPutListDelete(t *testing.T, s store.Store) {
	at := time.Now().Truncate(time.Millisecond)
	r1 := store.DirectRequest{UserID: "u1", Chat: "d:u1:u3", From: "u3", CreatedAt: at}
	r2 := store.DirectRequest{UserID: "u1", Chat: "d:u1:u2", From: "u2", CreatedAt: at.Add(time.Second)}
	for _, r := range []store.DirectRequest{r1, r2} {
		if err := s.PutRequest(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	checkRequests(t, s, "u1", r2, r1)
	checkRequests(t, s, "u2")
	checkRequests(t, s, "u")
	if ok, err := s.DeleteRequest(t.Context(), "u1", r2.Chat); err != nil || !ok {
		t.Fatalf("DeleteRequest = %v, %v; want true", ok, err)
	}
	if ok, err := s.DeleteRequest(t.Context(), "u1", r2.Chat); err != nil || ok {
		t.Fatalf("second DeleteRequest = %v, %v; want false", ok, err)
	}
	if ok, err := s.DeleteRequest(t.Context(), "u2", r1.Chat); err != nil || ok {
		t.Fatalf("DeleteRequest of another user's = %v, %v; want false", ok, err)
	}
	checkRequests(t, s, "u1", r1)
}

func testRequestPutKeepsFirst(t *testing.T, s store.Store) {
	r := store.DirectRequest{UserID: "u1", Chat: "d:u1:u2", From: "u2", CreatedAt: time.Now().Truncate(time.Millisecond)}
	if err := s.PutRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	again := r
	again.CreatedAt = r.CreatedAt.Add(time.Hour)
	if err := s.PutRequest(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	checkRequests(t, s, "u1", r)
}

func testRequestCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := store.DirectRequest{UserID: "u1", Chat: "d:u1:u2", From: "u2", CreatedAt: time.Now()}
	if err := s.PutRequest(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutRequest with a cancelled context = %v", err)
	}
	if _, err := s.RequestsOf(ctx, "u1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("RequestsOf with a cancelled context = %v", err)
	}
	if _, err := s.DeleteRequest(ctx, "u1", r.Chat); !errors.Is(err, context.Canceled) {
		t.Fatalf("DeleteRequest with a cancelled context = %v", err)
	}
	checkRequests(t, s, "u1")
}
