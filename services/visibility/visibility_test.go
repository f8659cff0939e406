package visibility

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

// countingStore is the real pebble store, counting reads and running an
// optional hook after each Member read (to land a change mid-computation).
type countingStore struct {
	*pebblestore.Store
	reads       atomic.Int64
	mu          sync.Mutex
	afterMember func()
}

func (s *countingStore) LastSeq(ctx context.Context, c string) (uint64, error) {
	s.reads.Add(1)
	return s.Store.LastSeq(ctx, c)
}

func (s *countingStore) GroupsOf(ctx context.Context, uid, after string, limit int) ([]store.Member, error) {
	s.reads.Add(1)
	return s.Store.GroupsOf(ctx, uid, after, limit)
}

func (s *countingStore) Member(ctx context.Context, gid, uid string) (store.Member, error) {
	s.reads.Add(1)
	m, err := s.Store.Member(ctx, gid, uid)
	s.mu.Lock()
	hook := s.afterMember
	s.afterMember = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return m, err
}

type counters struct{ hits, misses, invalidations atomic.Int64 }

func (c *counters) ObserveVisibility(cached, _ bool) {
	if cached {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
}

func (c *counters) ObserveVisibilityInvalidation(_ string, n int) { c.invalidations.Add(int64(n)) }

type fixture struct {
	t   *testing.T
	ctx context.Context
	st  *countingStore
	idx *Index
	m   *counters
}

func newFixture(t *testing.T, size int) *fixture {
	t.Helper()
	pb, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pb.Close() })
	st := &countingStore{Store: pb}
	m := &counters{}
	return &fixture{t: t, ctx: context.Background(), st: st, idx: New(st, Options{Size: size, Metrics: m}), m: m}
}

// group stores a group of uids (the first owns it) and tells the index, as
// the groups service does.
func (f *fixture) group(uids ...string) string {
	f.t.Helper()
	gid := ids.NewUserID()
	now := time.Now()
	var ms []store.Member
	for i, u := range uids {
		role := store.RoleMember
		if i == 0 {
			role = store.RoleOwner
		}
		ms = append(ms, store.Member{GroupID: gid, UserID: u, Role: role, JoinedAt: now})
	}
	if err := f.st.CreateGroup(f.ctx, store.Group{ID: gid, Name: gid, CreatedBy: uids[0], CreatedAt: now}, ms); err != nil {
		f.t.Fatal(err)
	}
	f.idx.MembersChanged(gid, uids)
	return gid
}

func (f *fixture) add(gid, uid string) {
	f.t.Helper()
	if err := f.st.PutMembers(f.ctx, gid, []store.Member{{GroupID: gid, UserID: uid, Role: store.RoleMember, JoinedAt: time.Now()}}); err != nil {
		f.t.Fatal(err)
	}
	f.idx.MembersChanged(gid, []string{uid})
}

func (f *fixture) remove(gid, uid string) {
	f.t.Helper()
	if err := f.st.RemoveMembers(f.ctx, gid, []string{uid}); err != nil {
		f.t.Fatal(err)
	}
	f.idx.MembersChanged(gid, []string{uid})
}

func (f *fixture) deleteGroup(gid string) {
	f.t.Helper()
	if err := f.st.DeleteGroup(f.ctx, gid); err != nil {
		f.t.Fatal(err)
	}
	f.idx.GroupDeleted(gid)
}

func (f *fixture) message(a, b string) {
	f.t.Helper()
	c := chat.DirectChatID(a, b)
	last, err := f.st.Store.LastSeq(f.ctx, c)
	if err != nil {
		f.t.Fatal(err)
	}
	m := store.Message{Chat: c, Seq: last + 1, ID: last + 1, From: a, Type: "text", Body: []byte("hi"), SentAt: time.Now()}
	if err := f.st.AppendMessages(f.ctx, []store.Message{m}); err != nil {
		f.t.Fatal(err)
	}
	if m.Seq == 1 {
		f.idx.DirectChatStarted(a, b)
	}
}

func (f *fixture) want(a, b string, want bool) {
	f.t.Helper()
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		got, err := f.idx.SharesChat(f.ctx, pair[0], pair[1])
		if err != nil || got != want {
			f.t.Fatalf("SharesChat(%s, %s) = %v, %v; want %v", pair[0], pair[1], got, err, want)
		}
	}
}

// wantCached asks again and checks that the answer came from memory.
func (f *fixture) wantCached(a, b string, want bool) {
	f.t.Helper()
	before := f.st.reads.Load()
	f.want(a, b, want)
	if n := f.st.reads.Load() - before; n != 0 {
		f.t.Fatalf("a cached answer for (%s, %s) read the store %d times", a, b, n)
	}
}

// TestInvalidation: every kind of membership change is seen by the next
// question, and an unchanged relation is answered from memory.
func TestInvalidation(t *testing.T) {
	tests := []struct {
		name string
		// arrange makes the relation of a and b, change alters it.
		arrange func(f *fixture, a, b, c string) string
		before  bool
		change  func(f *fixture, a, b, c, gid string)
		after   bool
	}{
		{"removed from the shared group",
			func(f *fixture, a, b, c string) string { return f.group(a, b, c) }, true,
			func(f *fixture, a, b, c, gid string) { f.remove(gid, b) }, false},
		{"leaves one of two shared groups",
			func(f *fixture, a, b, c string) string { f.group(c, a, b); return f.group(a, b) }, true,
			func(f *fixture, a, b, c, gid string) { f.remove(gid, b) }, true},
		{"added to a group",
			func(f *fixture, a, b, c string) string { return f.group(a, c) }, false,
			func(f *fixture, a, b, c, gid string) { f.add(gid, b) }, true},
		{"group created",
			func(f *fixture, a, b, c string) string { return "" }, false,
			func(f *fixture, a, b, c, _ string) { f.group(c, a, b) }, true},
		{"group deleted",
			func(f *fixture, a, b, c string) string { return f.group(c, a, b) }, true,
			func(f *fixture, a, b, c, gid string) { f.deleteGroup(gid) }, false},
		{"first 1:1 message",
			func(f *fixture, a, b, c string) string { return "" }, false,
			func(f *fixture, a, b, c, _ string) { f.message(b, a) }, true},
		{"a 1:1 chat outlives the groups",
			func(f *fixture, a, b, c string) string { f.message(a, b); return f.group(a, b) }, true,
			func(f *fixture, a, b, c, gid string) { f.deleteGroup(gid) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 0)
			a, b, c := ids.NewUserID(), ids.NewUserID(), ids.NewUserID()
			gid := tt.arrange(f, a, b, c)
			f.want(a, b, tt.before)
			f.wantCached(a, b, tt.before)
			tt.change(f, a, b, c, gid)
			f.want(a, b, tt.after)
			f.wantCached(a, b, tt.after)
		})
	}
}

// TestCachedWithoutNotice: the cache is what answers; a change the index is
// not told of (no path in chatd makes one) stays unseen.
func TestCachedWithoutNotice(t *testing.T) {
	f := newFixture(t, 0)
	a, b := ids.NewUserID(), ids.NewUserID()
	gid := f.group(a, b)
	f.want(a, b, true)
	if err := f.st.RemoveMembers(f.ctx, gid, []string{b}); err != nil {
		t.Fatal(err)
	}
	f.wantCached(a, b, true)
	f.idx.MembersChanged(gid, []string{b})
	f.want(a, b, false)
	if f.m.hits.Load() == 0 || f.m.misses.Load() == 0 || f.m.invalidations.Load() == 0 {
		t.Fatalf("metrics: %d hits, %d misses, %d invalidations", f.m.hits.Load(), f.m.misses.Load(), f.m.invalidations.Load())
	}
}

// TestChangeDuringComputation: a change that lands while an answer is being
// computed from the store makes that answer stale; the next question sees
// the change.
func TestChangeDuringComputation(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *fixture, gid, b string)
	}{
		{"member removed", func(f *fixture, gid, b string) { f.remove(gid, b) }},
		{"group deleted", func(f *fixture, gid, _ string) { f.deleteGroup(gid) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 0)
			a, b := ids.NewUserID(), ids.NewUserID()
			gid := f.group(a, b)
			f.st.mu.Lock()
			f.st.afterMember = func() { tt.change(f, gid, b) }
			f.st.mu.Unlock()
			// The membership was read before the change: "yes" is a fair
			// answer for a question racing it.
			if ok, err := f.idx.SharesChat(f.ctx, a, b); err != nil || !ok {
				t.Fatalf("racing SharesChat = %v, %v", ok, err)
			}
			f.want(a, b, false)
		})
	}
}

// TestBounded: the cache never holds more than its size (plus the quarter
// for "no" answers), however many pairs are asked about.
func TestBounded(t *testing.T) {
	const size = 8
	f := newFixture(t, size)
	hub := ids.NewUserID()
	for i := range 3 * size {
		u := ids.NewUserID()
		if i%2 == 0 {
			f.group(hub, u)
		}
		f.want(hub, u, i%2 == 0)
		if n := f.idx.Len(); n > size+size/4 {
			t.Fatalf("after %d pairs the cache holds %d answers, bound %d", i+1, n, size+size/4)
		}
	}
	// Strangers' "no" answers do not push out the "yes" answers.
	for range size {
		f.want(hub, ids.NewUserID(), false)
	}
	f.idx.mu.Lock()
	kept := f.idx.yes.len()
	f.idx.mu.Unlock()
	if kept != size {
		t.Fatalf("%d yes answers kept after strangers were asked about, want %d", kept, size)
	}
}

// TestManyGroups: users in more groups than one store page.
func TestManyGroups(t *testing.T) {
	f := newFixture(t, 0)
	a, b, c := ids.NewUserID(), ids.NewUserID(), ids.NewUserID()
	var shared string
	for i := range groupsPage + 3 {
		if i == groupsPage+1 {
			shared = f.group(a, b)
			continue
		}
		f.group(a)
	}
	for _, tt := range []struct {
		x, y string
		want bool
	}{{a, b, true}, {a, c, false}, {c, b, false}} {
		f.want(tt.x, tt.y, tt.want)
	}
	if ok, err := f.idx.SharesChat(f.ctx, c, c); err != nil || !ok {
		t.Fatalf("SharesChat(c, c) = %v, %v", ok, err)
	}
	f.remove(shared, b)
	f.want(a, b, false)
}
