// Package receipts turns cursor moves into delivered and read receipts.
//
// Moves arrive from hot paths: delivered moves from the broker's PUBACK hook
// (one per inbox message a device acknowledges), read moves from
// chat.Service.MarkRead. Taking one is a map update under a mutex. Every
// flush interval the Coalescer's goroutine applies the interval's delivered
// moves to the store (one AdvanceCursors per (user, chat), with the highest
// seq seen, a few at a time so the store can share disk syncs) and then
// publishes the resulting events:
//
//   - 1:1 chats: one Receipt per moved user to both users of the chat;
//   - group chats: one Receipts event per chat, listing every member whose
//     cursor moved in the interval, to every member. A message delivered to
//     the 499 other members of a 500-member group costs each member at most
//     one event per interval, not one per delivery.
package receipts

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is where delivered cursors are kept.
type Store interface {
	AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (store.ChatState, bool, error)
}

// Members lists the users a group chat's receipts go to
// (chat.Service.Members).
type Members interface {
	Members(ctx context.Context, chat string) ([]string, error)
}

// Events publishes an event to a user's devices (hooks.Outbox).
type Events interface {
	Event(uid string, v any)
}

// Receipt tells the users of a 1:1 chat that one of them moved a cursor.
// Only the cursors that moved are present.
type Receipt struct {
	Type         string `json:"type"` // "receipt"
	Chat         string `json:"chat"`
	User         string `json:"user"`
	DeliveredSeq uint64 `json:"delivered_seq,omitempty"`
	ReadSeq      uint64 `json:"read_seq,omitempty"`
}

// Receipts tells a group's members whose cursors moved in one interval.
type Receipts struct {
	Type     string  `json:"type"` // "receipts"
	Chat     string  `json:"chat"`
	Receipts []Entry `json:"receipts"`
}

// Entry is one member's cursors after the interval's moves.
type Entry struct {
	User         string `json:"user"`
	DeliveredSeq uint64 `json:"delivered_seq"`
	ReadSeq      uint64 `json:"read_seq"`
}

// Options configures a Coalescer.
type Options struct {
	Interval time.Duration // between flushes; default 250 ms
	// MaxPending bounds the (user, chat) pairs waiting for one flush;
	// reaching it flushes early, and moves past it are dropped and logged.
	// Default 100000.
	MaxPending int
	// MaxEvents bounds the events one flush publishes; the rest are
	// dropped and logged (clients recover cursors from the chat list).
	// Default 200000.
	MaxEvents    int
	StoreTimeout time.Duration // per store or members call; default 5 s
	// Workers is how many store writes of one flush run at once, so the
	// store can share disk syncs among them. Default 16.
	Workers int
	Logger  *slog.Logger
	Now     func() time.Time
	Metrics Metrics // nil = none
}

// Metrics observes the coalescer (internal/metrics.Receipts).
type Metrics interface {
	// ObserveReceiptsFlush records one flush: how long it took, the cursor
	// moves it stored and the events it published.
	ObserveReceiptsFlush(d time.Duration, moves, events int)
	// ObserveReceiptsDropped counts what a full interval had to drop:
	// kind "move" (a cursor move not stored) or "event" (not published).
	ObserveReceiptsDropped(kind string, n int)
	// ObserveReceiptsError counts a cursor move the store refused.
	ObserveReceiptsError()
}

type noMetrics struct{}

func (noMetrics) ObserveReceiptsFlush(time.Duration, int, int) {}
func (noMetrics) ObserveReceiptsDropped(string, int)           {}
func (noMetrics) ObserveReceiptsError()                        {}

type key struct{ uid, chat string }

type move struct{ delivered, read uint64 }

// Coalescer collects cursor moves and flushes them periodically.
type Coalescer struct {
	st      Store
	members Members
	events  Events
	opts    Options

	mu      sync.Mutex
	pending map[key]move
	dropped int
	closed  bool

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New starts a Coalescer; Close flushes what is pending and stops it.
func New(st Store, members Members, events Events, opts Options) *Coalescer {
	if opts.Interval <= 0 {
		opts.Interval = 250 * time.Millisecond
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 200_000
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	c := &Coalescer{
		st: st, members: members, events: events, opts: opts,
		pending: make(map[key]move),
		kick:    make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go c.run()
	return c
}

// Delivered records that a device of uid acknowledged chat's message seq.
// It never blocks and does no I/O: it runs on broker goroutines.
func (c *Coalescer) Delivered(uid, chat string, seq uint64) { c.add(uid, chat, move{delivered: seq}) }

// Read records that uid's read cursor of chat moved to seq; the caller has
// already stored it.
func (c *Coalescer) Read(uid, chat string, seq uint64) { c.add(uid, chat, move{read: seq}) }

func (c *Coalescer) add(uid, chat string, m move) {
	if uid == "" || chat == "" || m.delivered == 0 && m.read == 0 {
		return
	}
	k := key{uid, chat}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	old, ok := c.pending[k]
	if !ok && len(c.pending) >= c.opts.MaxPending {
		c.dropped++
		c.mu.Unlock()
		c.flushSoon()
		return
	}
	c.pending[k] = move{delivered: max(old.delivered, m.delivered), read: max(old.read, m.read)}
	full := len(c.pending) >= c.opts.MaxPending
	c.mu.Unlock()
	if full {
		c.flushSoon()
	}
}

func (c *Coalescer) flushSoon() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Close flushes the pending moves and stops; moves arriving later are
// ignored. It is safe to call more than once.
func (c *Coalescer) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
	})
	<-c.done
}

func (c *Coalescer) run() {
	defer close(c.done)
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.kick:
		case <-c.stop:
			c.flush()
			return
		}
		c.flush()
	}
}

// change is one (user, chat) whose cursors moved in the interval.
type change struct {
	uid             string
	delivered, read uint64 // the moved cursors' values, 0 = did not move
	state           store.ChatState
	stateKnown      bool
}

func (c *Coalescer) flush() {
	c.mu.Lock()
	batch, dropped := c.pending, c.dropped
	if len(batch) == 0 && dropped == 0 {
		c.mu.Unlock()
		return
	}
	c.pending = make(map[key]move, min(len(batch), 1024))
	c.dropped = 0
	c.mu.Unlock()
	if dropped > 0 {
		c.opts.Metrics.ObserveReceiptsDropped("move", dropped)
		c.opts.Logger.Warn("receipts: cursor moves dropped, too many pending in one interval",
			"dropped", dropped, "max_pending", c.opts.MaxPending)
	}

	start := time.Now()
	now := c.opts.Now()
	keys := make([]key, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	changes := make([]change, len(keys))
	moved := make([]bool, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c.opts.Workers, len(keys)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(keys); i = int(next.Add(1) - 1) {
				changes[i], moved[i] = c.apply(keys[i], batch[keys[i]], now)
			}
		})
	}
	wg.Wait()
	byChat := make(map[string][]change)
	stored := 0
	for i, k := range keys {
		if moved[i] {
			stored++
			byChat[k.chat] = append(byChat[k.chat], changes[i])
		}
	}
	budget := c.opts.MaxEvents
	skipped := 0
	for chatID, changes := range byChat {
		slices.SortFunc(changes, func(a, b change) int { return cmp.Compare(a.uid, b.uid) })
		skipped += c.publish(chatID, changes, &budget)
	}
	if skipped > 0 {
		c.opts.Metrics.ObserveReceiptsDropped("event", skipped)
		c.opts.Logger.Warn("receipts: events dropped, too many in one interval", "dropped", skipped, "max_events", c.opts.MaxEvents)
	}
	c.opts.Metrics.ObserveReceiptsFlush(time.Since(start), stored, c.opts.MaxEvents-budget)
}

// apply stores a delivered move and reports what moved.
func (c *Coalescer) apply(k key, m move, now time.Time) (change, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
	defer cancel()
	ch := change{uid: k.uid}
	// The read cursor is already stored by MarkRead; passing it again is a
	// no-op that also returns the latest delivered cursor for group entries.
	st, changed, err := c.st.AdvanceCursors(ctx, k.uid, k.chat, m.delivered, m.read, now)
	switch {
	case err == nil:
		ch.state, ch.stateKnown = st, true
		if m.delivered > 0 && changed {
			ch.delivered = st.DeliveredSeq
		}
		if m.read > 0 {
			ch.read = max(m.read, st.ReadSeq)
		}
	case errors.Is(err, store.ErrNotFound):
		// Not (or no longer) in the user's list: nothing to deliver to.
		ch.read = m.read
	default:
		c.opts.Metrics.ObserveReceiptsError()
		c.opts.Logger.Error("receipts: advance delivered cursor", "user", k.uid, "chat", k.chat, "seq", m.delivered, "error", err)
		ch.read = m.read
	}
	return ch, ch.delivered > 0 || ch.read > 0
}

// publish sends one chat's events and returns how many did not fit the budget.
func (c *Coalescer) publish(chatID string, changes []change, budget *int) int {
	if a, b, ok := chat.DirectMembers(chatID); ok {
		to := []string{a, b}
		if a == b {
			to = to[:1]
		}
		skipped := 0
		for _, ch := range changes {
			ev := Receipt{Type: "receipt", Chat: chatID, User: ch.uid, DeliveredSeq: ch.delivered, ReadSeq: ch.read}
			for _, r := range to {
				if *budget <= 0 {
					skipped++
					continue
				}
				*budget--
				c.events.Event(r, ev)
			}
		}
		return skipped
	}
	if _, ok := chat.GroupID(chatID); !ok {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
	defer cancel()
	members, err := c.members.Members(ctx, chatID)
	if err != nil {
		c.opts.Logger.Error("receipts: group members", "chat", chatID, "error", err)
		return 0
	}
	ev := Receipts{Type: "receipts", Chat: chatID, Receipts: make([]Entry, len(changes))}
	for i, ch := range changes {
		e := Entry{User: ch.uid, DeliveredSeq: ch.delivered, ReadSeq: ch.read}
		if ch.stateKnown {
			e.DeliveredSeq, e.ReadSeq = ch.state.DeliveredSeq, max(ch.read, ch.state.ReadSeq)
		}
		ev.Receipts[i] = e
	}
	// Encode once for every member.
	raw, err := json.Marshal(ev)
	if err != nil {
		c.opts.Logger.Error("receipts: encode", "chat", chatID, "error", err)
		return 0
	}
	payload := json.RawMessage(raw)
	skipped := 0
	for _, m := range members {
		if *budget <= 0 {
			skipped++
			continue
		}
		*budget--
		c.events.Event(m, payload)
	}
	return skipped
}

// GroupStore lists a group's members.
type GroupStore = chat.GroupLister

// StoreMembers answers Members from the store: both users of a 1:1 chat,
// the current members of a group, nobody for anything else.
func StoreMembers(st GroupStore) Members { return storeMembers{st} }

type storeMembers struct{ st GroupStore }

func (s storeMembers) Members(ctx context.Context, chatID string) ([]string, error) {
	uids, _, err := chat.Participants(ctx, s.st, chatID)
	return uids, err
}
