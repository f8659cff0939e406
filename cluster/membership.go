package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxSlot is the highest message-id node number (internal/ids: 10 bits).
const maxSlot = 1023

func slotKey(i int) string { return "slot." + strconv.Itoa(i) }

// claimSlot takes the lowest free message-id number: Create fails while
// another live node holds the key, and a dead node's key ages out with it.
func (n *Node) claimSlot(ctx context.Context) error {
	for i := 0; i <= maxSlot; i++ {
		_, err := n.kv.Create(ctx, slotKey(i), []byte(n.id))
		if err == nil {
			n.slot.Store(int64(i))
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("cluster: claim message-id slot %d: %w", i, err)
		}
	}
	return fmt.Errorf("cluster: all %d message-id slots are taken", maxSlot+1)
}

// reclaimSlot keeps this node's message-id slot if nobody took it while
// the node was away, or claims a free one (told to OnSlot).
func (n *Node) reclaimSlot(ctx context.Context) error {
	e, err := n.kv.Get(ctx, slotKey(n.Slot()))
	if err == nil && string(e.Value()) == n.id {
		return nil
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: check message-id slot: %w", err)
	}
	if err := n.claimSlot(ctx); err != nil {
		return err
	}
	if n.opts.OnSlot != nil {
		n.opts.OnSlot(n.Slot())
	}
	return nil
}

// margin is how much earlier than its key a node considers its own lease
// gone: the key's age runs from when NATS stored the put, the lease from
// before the put was sent, and the margin absorbs clock-rate differences
// and the server's expiry granularity.
func (n *Node) margin() time.Duration {
	return min(n.opts.Heartbeat, n.opts.TTL/4)
}

// beat renews the membership key and the slot key. The lease is extended
// only when both are renewed.
func (n *Node) beat(ctx context.Context) error {
	sent := n.now()
	info := n.opts.Info()
	info.ID, info.Incarnation, info.Slot, info.Started = n.id, n.incarn, n.Slot(), n.base.UTC()
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode node info: %w", err)
	}
	if prev := n.leaseUntil.Load(); n.joined.Load() && prev > 0 && sent >= prev {
		// Silent past the lease (paused, partitioned): the others may
		// have taken this node's chats and its message-id slot, so
		// everything cached about them goes before the node counts
		// itself in again.
		n.fence("membership lease lapsed before it was renewed")
		if err := n.reclaimSlot(ctx); err != nil {
			return err
		}
	}
	if _, err := n.kv.Put(ctx, "node."+n.id, b); err != nil {
		return fmt.Errorf("renew membership key: %w", err)
	}
	if _, err := n.kv.Put(ctx, slotKey(n.Slot()), []byte(n.id)); err != nil {
		return fmt.Errorf("renew message-id slot: %w", err)
	}
	n.leaseUntil.Store(sent + int64(n.opts.TTL-n.margin()))
	if n.fenced.CompareAndSwap(true, false) {
		n.m.SetMember(true)
		n.log.Warn("rejoined the cluster after losing the membership lease", "node", n.id)
	}
	return nil
}

// fence takes the node out: Check fails from now on, and the registered
// callbacks drop the clients and forget chat state.
func (n *Node) fence(why string) {
	if !n.fenced.CompareAndSwap(false, true) {
		return
	}
	n.m.Fenced()
	n.m.SetMember(false)
	n.log.Error("lost cluster membership: refusing sends and dropping clients", "node", n.id, "reason", why)
	n.hooksMu.Lock()
	fs := slices.Clone(n.onFence)
	n.hooksMu.Unlock()
	for _, f := range fs {
		f()
	}
}

func (n *Node) heartbeats() {
	defer close(n.done)
	t := time.NewTicker(n.opts.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if n.now() >= n.leaseUntil.Load() {
			n.fence("membership lease expired")
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.opts.Heartbeat)
		err := n.beat(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			n.log.Warn("cluster heartbeat failed", "error", err)
		case err == nil && failing:
			failing = false
			n.log.Info("cluster heartbeat renewed")
		}
		n.changed(n.view.sweep(n.now() - int64(n.opts.TTL)))
	}
}

// watch follows the membership bucket: puts add or refresh a node, deletes
// and the markers of keys that aged out remove it.
func (n *Node) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.Background())
	w, err := n.kv.Watch(wctx, "node.*")
	if err != nil {
		cancel()
		return fmt.Errorf("cluster: watch membership: %w", err)
	}
	n.view.setWatch(cancel)
	initial := make(chan struct{})
	go func() {
		var once sync.Once
		for e := range w.Updates() {
			if e == nil { // end of the initial values
				once.Do(func() { close(initial) })
				continue
			}
			n.apply(e)
		}
		once.Do(func() { close(initial) })
	}()
	select {
	case <-initial:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: read membership: %w", ctx.Err())
	}
}

func (n *Node) apply(e jetstream.KeyValueEntry) {
	id := strings.TrimPrefix(e.Key(), "node.")
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var info NodeInfo
		if err := json.Unmarshal(e.Value(), &info); err != nil || info.ID != id {
			n.log.Warn("ignoring a malformed membership key", "key", e.Key(), "error", err)
			return
		}
		n.changed(n.view.put(info, n.now()))
	default: // deleted (a node left) or aged out (a node died)
		n.changed(n.view.remove(id))
	}
}

// change is a difference between two views. A node that restarted within
// the TTL appears in both lists: it left (its old state is gone) and joined.
type change struct{ joined, left []string }

func (n *Node) changed(c change) {
	if len(c.joined) == 0 && len(c.left) == 0 {
		return
	}
	n.m.SetNodes(n.view.size())
	for _, id := range c.left {
		n.calls.failNode(id)
	}
	n.log.Info("cluster view changed", "joined", c.joined, "left", c.left, "nodes", n.view.size())
	n.hooksMu.Lock()
	fs := slices.Clone(n.onChange)
	n.hooksMu.Unlock()
	for _, f := range fs {
		f(c.joined, c.left)
	}
	n.pres.viewChanged(n, c)
}

// view is the set of live nodes. The ring (sorted ids) is swapped whole, so
// the send path reads it without a lock.
type view struct {
	mu      sync.Mutex
	members map[string]*member
	ring    atomic.Pointer[[]string]
	cancel  context.CancelFunc
}

type member struct {
	info NodeInfo
	seen int64 // node clock of the last put
}

func (v *view) init() {
	v.members = make(map[string]*member)
	v.ring.Store(&[]string{})
}

func (v *view) setWatch(cancel context.CancelFunc) {
	v.mu.Lock()
	v.cancel = cancel
	v.mu.Unlock()
}

func (v *view) stopWatch() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cancel != nil {
		v.cancel()
	}
}

func (v *view) put(info NodeInfo, now int64) change {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.members[info.ID]
	var c change
	switch {
	case m == nil:
		c.joined = []string{info.ID}
	case m.info.Incarnation != info.Incarnation:
		c.left, c.joined = []string{info.ID}, []string{info.ID}
	}
	v.members[info.ID] = &member{info: info, seen: now}
	if m == nil {
		v.rebuild()
	}
	return c
}

func (v *view) remove(id string) change {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.members[id]; !ok {
		return change{}
	}
	delete(v.members, id)
	v.rebuild()
	return change{left: []string{id}}
}

// sweep drops nodes whose last put is older than cutoff: the watch normally
// reports their key's expiry, this covers a missed marker.
func (v *view) sweep(cutoff int64) change {
	v.mu.Lock()
	defer v.mu.Unlock()
	var c change
	for id, m := range v.members {
		if m.seen < cutoff {
			delete(v.members, id)
			c.left = append(c.left, id)
		}
	}
	if len(c.left) > 0 {
		v.rebuild()
	}
	return c
}

func (v *view) rebuild() {
	ids := make([]string, 0, len(v.members))
	for id := range v.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	v.ring.Store(&ids)
}

func (v *view) ids() []string { return *v.ring.Load() }

func (v *view) has(id string) bool { return slices.Contains(v.ids(), id) }

func (v *view) size() int { return len(v.ids()) }

func (v *view) infos() []NodeInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]NodeInfo, 0, len(v.members))
	for _, m := range v.members {
		out = append(out, m.info)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (v *view) incarnation(id string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if m := v.members[id]; m != nil {
		return m.info.Incarnation
	}
	return ""
}
