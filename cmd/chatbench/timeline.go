package main

import (
	"sync"
	"time"
)

// timeline keeps latency samples by when their message was sent, so a run
// can be cut into phases and windows afterwards. A message held up by a
// stall counts against the second it was sent in, not the second it finally
// arrived in, which is what a user waiting for it sees.
type timeline struct {
	mu   sync.Mutex
	bins [][]sample // by whole seconds of at
}

type sample struct{ at, lat time.Duration }

// maxTimelineBins bounds memory for a runaway clock: runs are minutes long.
const maxTimelineBins = 3600

// add records a message sent at offset at (from the run's start) that took lat.
func (t *timeline) add(at, lat time.Duration) {
	i := max(int(at/time.Second), 0)
	if i >= maxTimelineBins {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.bins) <= i {
		t.bins = append(t.bins, nil)
	}
	t.bins[i] = append(t.bins[i], sample{max(at, 0), lat})
}

// between summarises the messages sent in [from, to).
func (t *timeline) between(from, to time.Duration) stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d []time.Duration
	first := max(int(from/time.Second), 0)
	for i := first; i < len(t.bins) && time.Duration(i)*time.Second < to; i++ {
		for _, s := range t.bins[i] {
			if s.at >= from && s.at < to {
				d = append(d, s.lat)
			}
		}
	}
	return summarize(d)
}

// perSecond summarises each second of sending, the first second at index 0.
func (t *timeline) perSecond() []stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]stats, len(t.bins))
	for i, b := range t.bins {
		out[i] = summarize(lats(b))
	}
	return out
}

// worst finds the window of width whole seconds (within the first n
// seconds) with the highest p99, then p90, then p50: windows overlapping
// one stall often share their p99 (its slowest messages), and the tie goes
// to the one more of which is stalled. A run shorter than width is one
// window.
func (t *timeline) worst(width, n int) (first int, s stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n = min(n, len(t.bins))
	width = max(width, 1)
	for start := 0; start == 0 || start+width <= n; start++ {
		var d []time.Duration
		for i := start; i < min(start+width, n); i++ {
			d = append(d, lats(t.bins[i])...)
		}
		if w := summarize(d); start == 0 || worse(w, s) {
			first, s = start, w
		}
	}
	return first, s
}

func lats(b []sample) []time.Duration {
	d := make([]time.Duration, len(b))
	for i, s := range b {
		d[i] = s.lat
	}
	return d
}

func worse(a, b stats) bool {
	if a.P99 != b.P99 {
		return a.P99 > b.P99
	}
	if a.P90 != b.P90 {
		return a.P90 > b.P90
	}
	return a.P50 > b.P50
}
