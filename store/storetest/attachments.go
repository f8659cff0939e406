package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func attachmentTests() []testCase {
	return []testCase{
		{"PutGet", testAttachmentPutGet},
		{"PutConflict", testAttachmentPutConflict},
		{"References", testAttachmentReferences},
		{"Unreferenced", testAttachmentUnreferenced},
		{"Delete", testAttachmentDelete},
		{"Usage", testAttachmentUsage},
		{"UsageConcurrent", testAttachmentUsageConcurrent},
		{"CanceledContext", testAttachmentCanceled},
	}
}

func newAttachment(id, owner string, created time.Time) store.Attachment {
	return store.Attachment{ID: id, Owner: owner, Size: 1234, SHA256: "ab12", ContentType: "image/png",
		Width: 640, Height: 480, ThumbWidth: 320, ThumbHeight: 240, CreatedAt: created.Truncate(time.Millisecond)}
}

func checkAttachment(t *testing.T, s store.Store, want store.Attachment) {
	t.Helper()
	got, err := s.Attachment(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("Attachment(%q): %v", want.ID, err)
	}
	if !sameInstant(got.CreatedAt, want.CreatedAt) {
		t.Fatalf("Attachment(%q).CreatedAt = %v, want %v", want.ID, got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt = want.CreatedAt
	if !slices.Equal(got.Chats, want.Chats) {
		t.Fatalf("Attachment(%q).Chats = %q, want %q", want.ID, got.Chats, want.Chats)
	}
	got.Chats = want.Chats
	if got.ID != want.ID || got.Owner != want.Owner || got.Size != want.Size || got.SHA256 != want.SHA256 ||
		got.ContentType != want.ContentType || got.Width != want.Width || got.Height != want.Height ||
		got.ThumbWidth != want.ThumbWidth || got.ThumbHeight != want.ThumbHeight {
		t.Fatalf("Attachment(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func testAttachmentPutGet(t *testing.T, s store.Store) {
	if _, err := s.Attachment(t.Context(), "a1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Attachment of nothing = %v, want ErrNotFound", err)
	}
	a := newAttachment("a1", "u1", time.Now())
	a.Chats = []string{"ignored"} // PutAttachment never writes references
	if err := s.PutAttachment(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	a.Chats = nil
	checkAttachment(t, s, a)
	plain := store.Attachment{ID: "a2", Owner: "u1", Size: 0, SHA256: "e3b0", ContentType: "text/plain; charset=utf-8", CreatedAt: a.CreatedAt}
	if err := s.PutAttachment(t.Context(), plain); err != nil {
		t.Fatal(err)
	}
	checkAttachment(t, s, plain)
}

func testAttachmentPutConflict(t *testing.T, s store.Store) {
	a := newAttachment("a1", "u1", time.Now())
	if err := s.PutAttachment(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	other := newAttachment("a1", "u2", time.Now())
	if err := s.PutAttachment(t.Context(), other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutAttachment of a taken id = %v, want ErrConflict", err)
	}
	checkAttachment(t, s, a)
}

func testAttachmentReferences(t *testing.T, s store.Store) {
	if err := s.MarkAttachmentReferenced(t.Context(), "nope", "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MarkAttachmentReferenced of nothing = %v, want ErrNotFound", err)
	}
	a := newAttachment("a1", "u1", time.Now())
	if err := s.PutAttachment(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	for _, chat := range []string{"g/zeta", "d/u1/u2", "g/zeta", "d/u1/u2"} {
		if err := s.MarkAttachmentReferenced(t.Context(), "a1", chat); err != nil {
			t.Fatalf("MarkAttachmentReferenced(%q): %v", chat, err)
		}
	}
	a.Chats = []string{"d/u1/u2", "g/zeta"}
	checkAttachment(t, s, a)
}

func testAttachmentUnreferenced(t *testing.T, s store.Store) {
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i, id := range []string{"old", "mid", "new", "used"} {
		if err := s.PutAttachment(t.Context(), newAttachment(id, "u1", base.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkAttachmentReferenced(t.Context(), "used", "c1"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		before time.Time
		limit  int
		want   []string
	}{
		{"all", base.Add(time.Hour), 10, []string{"old", "mid", "new"}},
		{"limit", base.Add(time.Hour), 2, []string{"old", "mid"}},
		{"before is exclusive", base.Add(time.Minute), 10, []string{"old"}},
		{"none so old", base, 10, []string{}},
		{"zero limit", base.Add(time.Hour), 0, []string{}},
	}
	for _, tc := range tests {
		got, err := s.UnreferencedAttachments(t.Context(), tc.before, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ids := []string{}
		for _, a := range got {
			if a.Referenced() {
				t.Fatalf("%s: %q is referenced", tc.name, a.ID)
			}
			ids = append(ids, a.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Fatalf("%s: UnreferencedAttachments = %q, want %q", tc.name, ids, tc.want)
		}
	}
}

func testAttachmentDelete(t *testing.T, s store.Store) {
	if err := s.DeleteAttachment(t.Context(), "a1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteAttachment of nothing = %v, want ErrNotFound", err)
	}
	created := time.Now().Add(-time.Minute)
	for _, id := range []string{"a1", "a2"} {
		if err := s.PutAttachment(t.Context(), newAttachment(id, "u1", created)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkAttachmentReferenced(t.Context(), "a2", "c1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2"} {
		if err := s.DeleteAttachment(t.Context(), id); err != nil {
			t.Fatalf("DeleteAttachment(%q): %v", id, err)
		}
		if _, err := s.Attachment(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Attachment(%q) after delete = %v, want ErrNotFound", id, err)
		}
	}
	if got, err := s.UnreferencedAttachments(t.Context(), time.Now(), 10); err != nil || len(got) != 0 {
		t.Fatalf("UnreferencedAttachments after delete = %v, %v; want none", got, err)
	}
	// The id is free again, without the old references.
	a := newAttachment("a2", "u2", time.Now())
	if err := s.PutAttachment(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	checkAttachment(t, s, a)
}

func testAttachmentUsage(t *testing.T, s store.Store) {
	const limit = 100
	steps := []struct {
		uid, day  string
		n         int64
		want      int64
		overQuota bool
	}{
		{"u1", "2026-12-01", 0, 0, false},
		{"u1", "2026-12-01", 60, 60, false},
		{"u1", "2026-12-01", 41, 60, true},
		{"u1", "2026-12-01", 40, 100, false},
		{"u1", "2026-12-01", 1, 100, true},
		{"u1", "2026-12-01", 0, 100, false},
		{"u1", "2026-12-02", 100, 100, false},
		{"u2", "2026-12-01", 101, 0, true},
		{"u2", "2026-12-01", 0, 0, false},
	}
	for i, st := range steps {
		got, err := s.AddAttachmentUsage(t.Context(), st.uid, st.day, st.n, limit)
		if st.overQuota != errors.Is(err, store.ErrQuotaExceeded) || (!st.overQuota && err != nil) {
			t.Fatalf("step %d: AddAttachmentUsage(%q, %q, %d) error = %v, over quota %v", i, st.uid, st.day, st.n, err, st.overQuota)
		}
		if got != st.want {
			t.Fatalf("step %d: AddAttachmentUsage(%q, %q, %d) = %d, want %d", i, st.uid, st.day, st.n, got, st.want)
		}
	}
}

// Concurrent uploads never push a day past its limit together.
func testAttachmentUsageConcurrent(t *testing.T, s store.Store) {
	const workers, n, limit = 8, 10, 35
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range workers {
		wg.Go(func() {
			_, err := s.AddAttachmentUsage(t.Context(), "u1", "2026-12-01", n, limit)
			switch {
			case err == nil:
				mu.Lock()
				accepted++
				mu.Unlock()
			case !errors.Is(err, store.ErrQuotaExceeded):
				t.Errorf("AddAttachmentUsage: %v", err)
			}
		})
	}
	wg.Wait()
	total, err := s.AddAttachmentUsage(t.Context(), "u1", "2026-12-01", 0, limit)
	if err != nil {
		t.Fatal(err)
	}
	if accepted != 3 || total != 30 {
		t.Fatalf("accepted %d adds for a total of %d, want 3 and 30", accepted, total)
	}
}

func testAttachmentCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a := newAttachment("a1", "u1", time.Now())
	if err := s.PutAttachment(ctx, a); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutAttachment with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Attachment(t.Context(), "a1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a cancelled PutAttachment stored something: %v", err)
	}
	if _, err := s.AddAttachmentUsage(ctx, "u1", "2026-12-01", 1, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddAttachmentUsage with a cancelled context = %v, want context.Canceled", err)
	}
}
