// Package visibility decides who may see whose presence: a user may see
// another's when they are the same user, or when they share a 1:1 chat with
// a message or are both members of a group and consent (services/consent:
// blocks, the presence setting) does not hide it.
//
// mochi asks this question before every delivery of a presence/{uid}
// message to every subscriber, on the goroutine publishing it, so the
// answers are kept in memory: a bounded cache of pair answers that the
// membership changes themselves invalidate (Index.MembersChanged,
// Index.GroupDeleted, Index.DirectChatStarted), called by the groups service
// and the chat writers right after the store has the change. A delivery
// whose answer is cached costs a map lookup and no store read.
package visibility

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is what the index reads on a cache miss.
type Store interface {
	LastSeq(ctx context.Context, chat string) (uint64, error)
	GroupsOf(ctx context.Context, uid, after string, limit int) ([]store.Member, error)
	Member(ctx context.Context, groupID, uid string) (store.Member, error)
}

// Metrics receives the index's observations; every method must be cheap.
type Metrics interface {
	// ObserveVisibility counts one question: cached is whether the answer
	// came from the cache, allowed what it was.
	ObserveVisibility(cached, allowed bool)
	// ObserveVisibilityInvalidation counts invalidations by kind: "user"
	// (one user's memberships changed) or "group" (a group was deleted).
	ObserveVisibilityInvalidation(kind string, n int)
}

// DefaultSize is the number of answers kept when Options.Size is 0.
const DefaultSize = 65536

// Consent answers whether a viewer may not see a target's presence
// whatever they share (a block, the target's presence setting):
// services/consent, which keeps its answers in memory itself.
type Consent interface {
	PresenceHidden(ctx context.Context, viewer, target string) (bool, error)
}

// Options configures the index.
type Options struct {
	// Consent, when set, is asked before the cache and can only say no,
	// so a block or a setting takes effect at once with no invalidation:
	// the cache keeps answering "do they share a chat".
	Consent Consent
	// Size bounds the cached answers. "Yes" answers may use all of it;
	// "no" answers are kept apart in a quarter of it, so questions about
	// strangers (refused subscriptions) cannot push out the answers that
	// presence deliveries need.
	Size    int
	Metrics Metrics
}

// Index answers SharesChat from its cache and the store. It is safe for
// concurrent use.
type Index struct {
	st   Store
	opts Options
	seed maphash.Seed

	// users and groups are epochs in stripes: a user's stripe moves when its
	// memberships change, a group's when the group is deleted. An answer
	// remembers the epochs it was computed under and is stale once one of
	// them moved. Striping bounds their memory; a collision only costs a
	// recomputation.
	users  [stripes]atomic.Uint64
	groups [stripes]atomic.Uint64
	// deletes counts group deletions, so an answer computed while one ran
	// is not cached with an epoch read after it (see compute).
	deletes atomic.Uint64

	mu  sync.Mutex
	yes *lru
	no  *lru
}

const stripes = 1 << 12

// New returns an index reading st on cache misses.
func New(st Store, opts Options) *Index {
	if opts.Size <= 0 {
		opts.Size = DefaultSize
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	return &Index{
		st: st, opts: opts, seed: maphash.MakeSeed(),
		yes: newLRU(opts.Size),
		no:  newLRU(max(1, opts.Size/4)),
	}
}

// answer is one cached pair answer.
type answer struct {
	key     pairKey
	ok      bool
	direct  bool   // ok because of a 1:1 chat with messages: never revoked
	ua, ub  uint64 // the users' epochs it was computed under
	witness string // the shared group that made ok true
	wg      uint64 // the witness group's epoch
}

type pairKey struct{ a, b string } // a < b

func keyOf(a, b string) pairKey {
	if b < a {
		a, b = b, a
	}
	return pairKey{a, b}
}

// SharesChat reports whether a may see b's presence: they share a chat
// (the symmetric part, cached) and b's consent allows a.
func (x *Index) SharesChat(ctx context.Context, a, b string) (bool, error) {
	if a == b {
		return true, nil
	}
	if x.opts.Consent != nil {
		hidden, err := x.opts.Consent.PresenceHidden(ctx, a, b)
		if err != nil {
			return false, fmt.Errorf("visibility: consent: %w", err)
		}
		if hidden {
			x.opts.Metrics.ObserveVisibility(true, false)
			return false, nil
		}
	}
	return x.Related(ctx, a, b)
}

// Related reports whether a and b share a 1:1 chat with a message or a
// group, whatever consent says: the cached, symmetric part of SharesChat.
func (x *Index) Related(ctx context.Context, a, b string) (bool, error) {
	if a == b {
		return true, nil
	}
	k := keyOf(a, b)
	// Read before anything else: a change that lands after this moves an
	// epoch and so makes whatever is computed below stale.
	ua, ub := x.user(k.a).Load(), x.user(k.b).Load()
	if ok, hit := x.cached(k, ua, ub); hit {
		x.opts.Metrics.ObserveVisibility(true, ok)
		return ok, nil
	}
	ok, err := x.compute(ctx, k, ua, ub)
	if err != nil {
		return false, err
	}
	x.opts.Metrics.ObserveVisibility(false, ok)
	return ok, nil
}

// cached returns the cached answer for k if it is still current.
func (x *Index) cached(k pairKey, ua, ub uint64) (ok, hit bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, found := x.yes.get(k); found {
		if e.direct || (e.ua == ua && e.ub == ub && x.group(e.witness).Load() == e.wg) {
			return true, true
		}
		x.yes.remove(k)
		return false, false
	}
	if e, found := x.no.get(k); found {
		if e.ua == ua && e.ub == ub {
			return false, true
		}
		x.no.remove(k)
	}
	return false, false
}

// compute answers from the store and caches the answer.
func (x *Index) compute(ctx context.Context, k pairKey, ua, ub uint64) (bool, error) {
	deletes := x.deletes.Load()
	e := answer{key: k, ua: ua, ub: ub}
	last, err := x.st.LastSeq(ctx, chat.DirectChatID(k.a, k.b))
	if err != nil {
		return false, fmt.Errorf("visibility: last seq: %w", err)
	}
	if last > 0 {
		e.ok, e.direct = true, true
	} else {
		gid, err := x.sharedGroup(ctx, k.a, k.b)
		if err != nil {
			return false, fmt.Errorf("visibility: shared group: %w", err)
		}
		if gid != "" {
			e.ok, e.witness = true, gid
			e.wg = x.group(gid).Load()
			// A deletion of gid that moved its epoch before the line above
			// also moved deletes (GroupDeleted moves deletes first): such
			// an answer is returned but not cached.
			if x.deletes.Load() != deletes {
				return true, nil
			}
		}
	}
	x.mu.Lock()
	if e.ok {
		x.no.remove(k)
		x.yes.put(e)
	} else {
		x.yes.remove(k)
		x.no.put(e)
	}
	x.mu.Unlock()
	return e.ok, nil
}

// groupsPage is how many memberships one GroupsOf read returns.
const groupsPage = 256

// sharedGroup returns a group both a and b are members of, "" when none.
// It reads both users' group lists a page at a time, in turn, until one of
// them is complete, then checks each group of that shorter list for the
// other user: the work is bounded by the smaller of the two lists.
func (x *Index) sharedGroup(ctx context.Context, a, b string) (string, error) {
	type side struct {
		uid, after string
		gids       []string
	}
	sides := [2]*side{{uid: a}, {uid: b}}
	for {
		for i, sd := range sides {
			ms, err := x.st.GroupsOf(ctx, sd.uid, sd.after, groupsPage)
			if err != nil {
				return "", err
			}
			for _, m := range ms {
				sd.gids = append(sd.gids, m.GroupID)
			}
			if len(ms) > 0 {
				sd.after = ms[len(ms)-1].GroupID
			}
			if len(ms) < groupsPage {
				return x.memberOfAny(ctx, sides[1-i].uid, sd.gids)
			}
		}
	}
}

func (x *Index) memberOfAny(ctx context.Context, uid string, gids []string) (string, error) {
	for _, gid := range gids {
		_, err := x.st.Member(ctx, gid, uid)
		if err == nil {
			return gid, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	return "", nil
}

// MembersChanged tells the index that uids joined or left group gid (a
// group created, members added, removed or leaving). Call it after the
// store has the change: the users' cached answers are stale from here on.
func (x *Index) MembersChanged(_ string, uids []string) {
	for _, u := range uids {
		x.user(u).Add(1)
	}
	x.opts.Metrics.ObserveVisibilityInvalidation("user", len(uids))
}

// GroupDeleted tells the index that group gid and all its memberships are
// gone. Call it after the store has the change. It needs no member list:
// every answer that relied on gid names it as its witness.
func (x *Index) GroupDeleted(gid string) {
	x.deletes.Add(1) // before the group's epoch; see compute
	x.group(gid).Add(1)
	x.opts.Metrics.ObserveVisibilityInvalidation("group", 1)
}

// DirectChatStarted tells the index that the 1:1 chat of a and b has its
// first message. Call it after the message is stored.
func (x *Index) DirectChatStarted(a, b string) {
	x.user(a).Add(1)
	if b != a {
		x.user(b).Add(1)
	}
	x.opts.Metrics.ObserveVisibilityInvalidation("user", 2)
}

// Len returns the number of cached answers.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.yes.len() + x.no.len()
}

func (x *Index) user(uid string) *atomic.Uint64 {
	return &x.users[maphash.String(x.seed, uid)%stripes]
}

func (x *Index) group(gid string) *atomic.Uint64 {
	return &x.groups[maphash.String(x.seed, gid)%stripes]
}

// lru is a fixed-capacity map of answers evicting the least recently used.
type lru struct {
	max int
	ll  *list.List // of answer, most recent first
	m   map[pairKey]*list.Element
}

func newLRU(n int) *lru { return &lru{max: n, ll: list.New(), m: make(map[pairKey]*list.Element)} }

func (c *lru) get(k pairKey) (answer, bool) {
	el, ok := c.m[k]
	if !ok {
		return answer{}, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(answer), true
}

func (c *lru) put(e answer) {
	if el, ok := c.m[e.key]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[e.key] = c.ll.PushFront(e)
	if c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(answer).key)
	}
}

func (c *lru) remove(k pairKey) {
	if el, ok := c.m[k]; ok {
		c.ll.Remove(el)
		delete(c.m, k)
	}
}

func (c *lru) len() int { return c.ll.Len() }

type nopMetrics struct{}

func (nopMetrics) ObserveVisibility(bool, bool)              {}
func (nopMetrics) ObserveVisibilityInvalidation(string, int) {}
