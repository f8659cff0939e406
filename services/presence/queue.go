package presence

import (
	"log/slog"
	"sync"
	"time"
)

// queue hands presence payloads to the Publisher on worker goroutines, so
// that no state change waits for a publish: a publish runs the broker's
// fan-out (an ACL check and a queued write per watcher) and can take long
// for a user with many watchers.
//
// It holds at most one pending payload per user, the newest (older ones
// are replaced: only the current state matters), and never publishes two
// payloads of one user at once. A user's payloads are therefore published
// in the order of their states, and the last one published, which becomes
// the retained presence/{uid}, is always the latest state.
//
// After publishing a user, the queue waits interval before publishing that
// user again; changes in between collapse into the newest. A user flapping
// its connection thus costs its watchers at most one delivery per interval
// instead of one per change.
type queue struct {
	pub      Publisher
	log      *slog.Logger
	clock    Clock
	interval time.Duration
	metrics  Metrics

	mu         sync.Mutex
	cond       *sync.Cond       // broadcast on every change of the fields below
	pending    map[string]item  // uid → newest payload not yet taken
	phase      map[string]phase // absent = idle
	ready      []string         // users in phaseQueued, FIFO
	publishing int              // users in phasePublishing
	closing    bool
	wg         sync.WaitGroup
}

type item struct {
	payload []byte
	status  string // for logs
}

type phase uint8

const (
	phaseQueued     phase = iota + 1 // in ready, waiting for a worker
	phasePublishing                  // a worker is publishing it
	phaseCooling                     // published less than interval ago
)

func newQueue(pub Publisher, o Options) *queue {
	q := &queue{
		pub: pub, log: o.Logger, clock: o.Clock, interval: o.PublishInterval, metrics: o.Metrics,
		pending: make(map[string]item), phase: make(map[string]phase),
	}
	q.cond = sync.NewCond(&q.mu)
	q.wg.Add(o.Workers)
	for range o.Workers {
		go q.work()
	}
	return q
}

// put makes it uid's next publish, replacing one not yet taken. It never
// blocks on a publish.
func (q *queue) put(uid string, it item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return
	}
	if _, replaced := q.pending[uid]; replaced && q.metrics != nil {
		q.metrics.ObservePresenceCoalesced()
	}
	q.pending[uid] = it
	if q.phase[uid] == 0 {
		q.enqueue(uid)
	}
}

// enqueue puts uid in ready; q.mu is held.
func (q *queue) enqueue(uid string) {
	q.phase[uid] = phaseQueued
	q.ready = append(q.ready, uid)
	q.cond.Broadcast()
}

func (q *queue) work() {
	defer q.wg.Done()
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.ready) == 0 && !q.closing {
			q.cond.Wait()
		}
		if len(q.ready) == 0 { // closing, and nothing left
			return
		}
		uid := q.ready[0]
		q.ready[0] = ""
		q.ready = q.ready[1:]
		it := q.pending[uid]
		delete(q.pending, uid)
		q.phase[uid] = phasePublishing
		q.publishing++
		q.mu.Unlock()

		if err := q.pub.PublishPresence(uid, it.payload); err != nil {
			q.log.Error("publish presence", "user", uid, "status", it.status, "error", err)
		}

		q.mu.Lock()
		q.publishing--
		if q.interval > 0 && !q.closing {
			q.phase[uid] = phaseCooling
			q.clock.AfterFunc(q.interval, func() { q.cooled(uid) })
		} else {
			q.release(uid)
		}
		q.cond.Broadcast()
	}
}

// cooled ends uid's wait after a publish.
func (q *queue) cooled(uid string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.phase[uid] == phaseCooling {
		q.release(uid)
	}
}

// release makes uid idle, or queues it again if a newer state arrived
// meanwhile; q.mu is held.
func (q *queue) release(uid string) {
	if _, ok := q.pending[uid]; ok {
		q.enqueue(uid)
		return
	}
	delete(q.phase, uid)
}

// flush waits until every payload put so far has been published, except
// those waiting for their user's interval to pass.
func (q *queue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) > 0 || q.publishing > 0 {
		q.cond.Wait()
	}
}

// close publishes what is pending at once, intervals or not, then stops
// the workers; later puts are dropped.
func (q *queue) close() {
	q.mu.Lock()
	q.closing = true
	for uid, p := range q.phase {
		if p == phaseCooling {
			q.release(uid)
		}
	}
	q.cond.Broadcast()
	q.mu.Unlock()
	q.wg.Wait()
}

// size returns the number of users with a payload waiting.
func (q *queue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}
