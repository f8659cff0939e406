package devicemsg

import (
	"context"
	"encoding/json"
	"sync"
)

// A device acknowledges its messages with MQTT PUBACKs, which the broker
// reports on its own goroutines where no store write may wait. Acked
// therefore only records the highest acknowledged seq per device; one
// goroutine writes them. Losing one (a full queue, a crash) costs a
// redelivery, never a message: acknowledgements only delete.
//
// While the device's pending messages are being replayed to it, its
// acknowledgements are held back until the replay ends: a message
// published live during the replay may reach the device before older ones
// the replay has not read yet, and its PUBACK (which acknowledges every
// seq up to it) would otherwise delete them unread.

// maxQueuedAcks bounds the devices with an acknowledgement waiting.
const maxQueuedAcks = 1 << 16

type deviceKey struct{ uid, device string }

type acker struct {
	s      *Service
	mu     sync.Mutex
	queued map[deviceKey]uint64
	held   map[deviceKey]*replayState
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

type replayState struct {
	replays int    // replays of the device running now
	upTo    uint64 // the highest seq acknowledged meanwhile
}

func newAcker(s *Service) *acker {
	a := &acker{
		s: s, queued: make(map[deviceKey]uint64), held: make(map[deviceKey]*replayState),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go a.run()
	return a
}

// Acked records that device of uid acknowledged every message up to seq.
// It never blocks: it is called from the broker's PUBACK handling.
func (s *Service) Acked(uid, device string, seq uint64) {
	a := s.acks
	k := deviceKey{uid, device}
	a.mu.Lock()
	if r := a.held[k]; r != nil {
		r.upTo = max(r.upTo, seq)
		a.mu.Unlock()
		return
	}
	a.queueLocked(k, seq)
	a.mu.Unlock()
}

func (a *acker) queueLocked(k deviceKey, seq uint64) {
	if _, ok := a.queued[k]; !ok && len(a.queued) >= maxQueuedAcks {
		a.s.opts.Logger.Warn("device message acknowledgement dropped: queue full", "user", k.uid, "device", k.device)
		return
	}
	a.queued[k] = max(a.queued[k], seq)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *acker) run() {
	defer close(a.done)
	for {
		select {
		case <-a.wake:
			a.flush()
		case <-a.stop:
			a.flush()
			return
		}
	}
}

func (a *acker) flush() {
	a.mu.Lock()
	batch := a.queued
	a.queued = make(map[deviceKey]uint64)
	a.mu.Unlock()
	for k, seq := range batch {
		ctx, cancel := context.WithTimeout(context.Background(), a.s.opts.StoreTimeout)
		if _, err := a.s.Ack(ctx, k.uid, k.device, seq); err != nil {
			a.s.opts.Logger.Warn("device message acknowledgement not stored", "user", k.uid, "device", k.device, "seq", seq, "error", err)
		}
		cancel()
	}
}

func (a *acker) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// replayPage is how many pending messages a replay reads at once.
const replayPage = 100

// Replay hands the device's pending messages, oldest first, to publish as
// View payloads, until none is left or publish returns false (the device
// went away). Acknowledgements that arrive meanwhile are applied when it
// returns.
func (s *Service) Replay(ctx context.Context, uid, device string, publish func(payload []byte) bool) error {
	k := deviceKey{uid, device}
	a := s.acks
	a.mu.Lock()
	r := a.held[k]
	if r == nil {
		r = &replayState{}
		a.held[k] = r
	}
	r.replays++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		r.replays--
		if r.replays == 0 {
			delete(a.held, k)
			if r.upTo > 0 {
				a.queueLocked(k, r.upTo)
			}
		}
		a.mu.Unlock()
	}()
	var after uint64
	for {
		msgs, err := s.Pending(ctx, uid, device, after, replayPage)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			after = m.Seq
			payload, err := json.Marshal(ViewOf(m))
			if err != nil {
				s.opts.Logger.Error("encode device message", "user", uid, "device", device, "seq", m.Seq, "error", err)
				continue
			}
			if !publish(payload) {
				return nil
			}
		}
		if len(msgs) < replayPage {
			return nil
		}
	}
}
