package people

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// fakeStore is an in-memory Store; the real backends prove the contract in
// store/storetest.
type fakeStore struct {
	mu       sync.Mutex
	users    map[string]store.User
	profiles map[string]store.Profile
}

func newFakeStore(users ...store.User) *fakeStore {
	f := &fakeStore{users: map[string]store.User{}, profiles: map[string]store.Profile{}}
	for _, u := range users {
		f.users[u.ID] = u
	}
	return f
}

func (f *fakeStore) UserByID(_ context.Context, id string) (store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

func (f *fakeStore) UserByUsername(_ context.Context, name string) (store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if u.Username == name {
			return u, nil
		}
	}
	return store.User{}, store.ErrNotFound
}

func (f *fakeStore) PutProfile(_ context.Context, p store.Profile) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[p.UserID]; !ok {
		return store.ErrNotFound
	}
	f.profiles[p.UserID] = p
	return nil
}

func (f *fakeStore) Profile(_ context.Context, uid string) (store.Profile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.profiles[uid]
	if !ok {
		return store.Profile{}, store.ErrNotFound
	}
	return p, nil
}

// pairs is a Relations of explicit pairs.
type pairs map[[2]string]bool

func (p pairs) SharesChat(_ context.Context, a, b string) (bool, error) {
	return a == b || p[[2]string{a, b}] || p[[2]string{b, a}], nil
}

const (
	ann = "aaaaaaaaaaaaaaaaaaaa"
	bob = "bbbbbbbbbbbbbbbbbbbb"
	cat = "cccccccccccccccccccc"
)

func newTestService(rate, burst int) (*Service, *fakeStore) {
	st := newFakeStore(
		store.User{ID: ann, Username: "ann"},
		store.User{ID: bob, Username: "bob"},
		store.User{ID: cat, Username: "cat"},
	)
	return New(st, pairs{{ann, bob}: true}, Options{LookupRate: rate, LookupBurst: burst}), st
}

func ptr[T any](v T) *T { return &v }

func TestLookupUniformNotFound(t *testing.T) {
	s, _ := newTestService(0, 0)
	ctx := t.Context()
	if _, err := s.Update(ctx, cat, Patch{Discoverable: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, requester, username string
		want                      string // user id, "" = not found
	}{
		{"exact", ann, "bob", bob},
		{"case-insensitive", ann, " BOB ", bob},
		{"unknown", ann, "nobody", ""},
		{"malformed", ann, "b!", ""},
		{"not discoverable", ann, "cat", ""},
		{"not discoverable finds themself", cat, "cat", cat},
	}
	var notFound string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Lookup(ctx, tc.requester, tc.username)
			if tc.want != "" {
				if err != nil || got.UserID != tc.want {
					t.Fatalf("Lookup = %+v, %v; want %s", got, err, tc.want)
				}
				return
			}
			if chat.CodeOf(err) != chat.CodeNotFound {
				t.Fatalf("Lookup = %+v, %v; want not_found", got, err)
			}
			if notFound == "" {
				notFound = err.Error()
			}
			if err.Error() != notFound {
				t.Fatalf("not-found answers differ: %q and %q", err.Error(), notFound)
			}
		})
	}
}

func TestLookupRateLimitedPerRequester(t *testing.T) {
	s, _ := newTestService(1, 2)
	ctx := t.Context()
	for i := range 2 {
		if _, err := s.Lookup(ctx, ann, "bob"); err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	_, err := s.Lookup(ctx, ann, "bob")
	var ce *chat.Error
	if !errors.As(err, &ce) || ce.Code != chat.CodeRateLimited || ce.RetryAfter <= 0 {
		t.Fatalf("third lookup: %v, want rate_limited with RetryAfter", err)
	}
	if _, err := s.Lookup(ctx, bob, "ann"); err != nil {
		t.Fatalf("another requester: %v", err)
	}
}

func TestGetVisibility(t *testing.T) {
	s, _ := newTestService(0, 0)
	ctx := t.Context()
	if _, err := s.Update(ctx, bob, Patch{DisplayName: ptr("Bob")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, requester, uid string
		ok                   bool
	}{
		{"self", bob, bob, true},
		{"shares a chat", ann, bob, true},
		{"stranger", cat, bob, false},
		{"unknown id", ann, "dddddddddddddddddddd", false},
		{"malformed id", ann, "../bob", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.Get(ctx, tc.requester, tc.uid)
			if tc.ok {
				if err != nil || v.DisplayName != "Bob" {
					t.Fatalf("Get = %+v, %v", v, err)
				}
				return
			}
			if err == nil || err.Error() != errNoSuchUser.Error() {
				t.Fatalf("Get = %+v, %v; want the uniform not-found", v, err)
			}
		})
	}
}

func TestUpdateValidatesEverythingFirst(t *testing.T) {
	s, st := newTestService(0, 0)
	ctx := t.Context()
	if _, err := s.Update(ctx, ann, Patch{DisplayName: ptr("  Ann  "), About: ptr("hello"), Avatar: ptr("https://x/a.png")}); err != nil {
		t.Fatal(err)
	}
	before := st.profiles[ann]
	if before.DisplayName != "Ann" || before.About != "hello" || !before.Discoverable {
		t.Fatalf("stored %+v", before)
	}
	bad := []struct {
		name  string
		patch Patch
	}{
		{"control in name", Patch{DisplayName: ptr("a\x00b")}},
		{"newline in about", Patch{About: ptr("a\nb")}},
		{"invalid UTF-8", Patch{About: ptr("\xff")}},
		{"name too long", Patch{DisplayName: ptr(strings.Repeat("é", MaxDisplayName+1))}},
		{"about too long", Patch{About: ptr(strings.Repeat("a", MaxAbout+1))}},
		{"avatar too long", Patch{Avatar: ptr(strings.Repeat("a", MaxAvatar+1))}},
		{"good field then bad one", Patch{DisplayName: ptr("New"), Discoverable: ptr(false), Avatar: ptr("\x7f")}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Update(ctx, ann, tc.patch); chat.CodeOf(err) != chat.CodeInvalid {
				t.Fatalf("Update = %v, want invalid", err)
			}
			if st.profiles[ann] != before {
				t.Fatalf("refused patch changed the profile: %+v", st.profiles[ann])
			}
		})
	}
	// At the limits exactly, and clearing.
	got, err := s.Update(ctx, ann, Patch{DisplayName: ptr(strings.Repeat("é", MaxDisplayName)), About: ptr("")})
	if err != nil || got.About != "" || got.Avatar != "https://x/a.png" {
		t.Fatalf("Update at the limit = %+v, %v", got, err)
	}
}

func TestConcurrentPatchesBothLand(t *testing.T) {
	s, st := newTestService(0, 0)
	s.opts.Now = func() time.Time { return time.Unix(0, 0) }
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = s.Update(t.Context(), ann, Patch{DisplayName: ptr("n" + strings.Repeat("x", i%3))})
		}()
		go func() { defer wg.Done(); _, _ = s.Update(t.Context(), ann, Patch{About: ptr("about")}) }()
	}
	wg.Wait()
	if p := st.profiles[ann]; p.About != "about" || !strings.HasPrefix(p.DisplayName, "n") {
		t.Fatalf("a patch was lost: %+v", p)
	}
}
