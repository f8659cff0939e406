package push

import (
	"slices"
	"sync"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Presence tells how many devices of a user are connected right now
// (presence.Service.Devices).
type Presence interface {
	Devices(uid string) int
}

// Queue takes push jobs (Service.Enqueue).
type Queue interface {
	Enqueue(uid string, m store.Message)
}

// Deliverer publishes a stored message to its recipients' inboxes
// (hooks.Outbox); it has the shape of chat.Deliverer.
type Deliverer interface {
	Deliver(recipients []string, m store.Message)
}

// Tracker decides which recipients of a message get a push: a recipient
// with no connected device at fan-out gets one at once; a recipient with
// connected devices gets one only if none of them acknowledges (PUBACKs)
// the inbox delivery within the ack timeout. The sender never gets one,
// nor does anyone for a system message (group changes).
//
// Waiting is tracked per (user, chat): a newer message while one is
// awaited joins the wait, and an acknowledgement of the newest seq ends it.
// Every method is O(1) per recipient under a mutex and does no I/O, so
// fan-out and the broker's PUBACK path stay fast.
type Tracker struct {
	queue    Queue
	presence Presence
	timeout  time.Duration

	mu      sync.Mutex
	waiting map[jobKey]*wait
	closed  bool
}

type wait struct {
	msg   store.Message // newest message sent to the user's devices
	timer *time.Timer
	gen   uint64 // identifies the live timer; a stale one finds it changed
}

// NewTracker returns a tracker queueing pushes on q.
func NewTracker(q Queue, p Presence, ackTimeout time.Duration) *Tracker {
	return &Tracker{queue: q, presence: p, timeout: ackTimeout, waiting: make(map[jobKey]*wait)}
}

// Wrap returns a Deliverer that lets t see every message just before next
// publishes it, so an acknowledgement can never arrive before its wait is
// registered.
func (t *Tracker) Wrap(next Deliverer) Deliverer { return fanout{t, next} }

type fanout struct {
	t    *Tracker
	next Deliverer
}

func (f fanout) Deliver(recipients []string, m store.Message) {
	f.t.Fanout(recipients, m)
	f.next.Deliver(recipients, m)
}

// DeliverQuiet publishes to every recipient but pushes none of quiet
// (message requests the recipient gets no pushes for).
func (f fanout) DeliverQuiet(recipients, quiet []string, m store.Message) {
	f.t.fanout(recipients, quiet, m)
	f.next.Deliver(recipients, m)
}

// Fanout registers a stored message about to be published to recipients.
func (t *Tracker) Fanout(recipients []string, m store.Message) { t.fanout(recipients, nil, m) }

func (t *Tracker) fanout(recipients, quiet []string, m store.Message) {
	if m.Type == "system" {
		return
	}
	for _, uid := range recipients {
		if uid == m.From || slices.Contains(quiet, uid) {
			continue
		}
		if t.presence.Devices(uid) == 0 {
			t.queue.Enqueue(uid, m)
			continue
		}
		t.await(uid, m)
	}
}

func (t *Tracker) await(uid string, m store.Message) {
	k := jobKey{uid, m.Chat}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if w := t.waiting[k]; w != nil {
		// The deadline stays the oldest unacknowledged message's: a busy
		// chat must not postpone the push forever.
		if m.Seq > w.msg.Seq {
			w.msg = m
		}
		return
	}
	w := &wait{msg: m}
	t.waiting[k] = w
	t.arm(k, w)
}

// arm starts w's timer; t.mu is held.
func (t *Tracker) arm(k jobKey, w *wait) {
	w.gen++
	gen := w.gen
	w.timer = time.AfterFunc(t.timeout, func() { t.expire(k, gen) })
}

func (t *Tracker) expire(k jobKey, gen uint64) {
	t.mu.Lock()
	w := t.waiting[k]
	if t.closed || w == nil || w.gen != gen {
		t.mu.Unlock()
		return
	}
	delete(t.waiting, k)
	t.mu.Unlock()
	t.queue.Enqueue(k.uid, w.msg)
}

// Delivered takes a device's PUBACK of an inbox message (the Delivery
// hook's receiver). Acknowledging the newest awaited seq ends the wait; an
// older one shows the device is alive and reading, so the wait restarts
// for the rest.
func (t *Tracker) Delivered(uid, chat string, seq uint64) {
	k := jobKey{uid, chat}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.waiting[k]
	if w == nil {
		return
	}
	w.timer.Stop()
	if seq >= w.msg.Seq {
		delete(t.waiting, k)
		return
	}
	t.arm(k, w)
}

// Waiting is the number of (user, chat) pairs awaiting an acknowledgement.
func (t *Tracker) Waiting() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting)
}

// Close stops every timer; nothing is queued afterwards.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for k, w := range t.waiting {
		w.timer.Stop()
		delete(t.waiting, k)
	}
}
