package auth

import (
	"fmt"
	"sync"
	"time"
)

// Login throttling per account, on top of the per-IP limit the API applies:
// an attacker spreading guesses over many source addresses still meets one
// budget per username.
//
// The design trades a little availability for a hard cap on guessing:
//   - The first FreeFailures consecutive failures of a username cost nothing.
//   - After that each attempt must wait a delay that doubles per further
//     failure (1 s, 2 s, 4 s …) up to MaxDelay: at most one guess per
//     MaxDelay however many addresses the attacker owns.
//   - An attempt refused for waiting is not checked and does not count, so
//     a flood cannot push the delay past MaxDelay or make it outlive the
//     attack: the lock always ends MaxDelay after the last counted failure.
//     There is no permanent lockout.
//   - A correct password resets the count.
//   - Only password login is throttled: devices already signed in keep
//     refreshing, so an attacker who keeps one account's login slowed down
//     does not sign its owner out anywhere.
//
// The key is the normalised username whether or not such an account exists,
// so the answers (429 and its Retry-After included) are the same for both.
type Throttle struct {
	free     int
	base     time.Duration
	max      time.Duration
	now      func() time.Time
	onThrott func()

	mu    sync.Mutex
	state map[string]*failures
	calls int
}

type failures struct {
	n     int       // consecutive counted failures (attempts in flight count as failures)
	until time.Time // no attempt before this
	last  time.Time // last counted attempt, for forgetting idle entries
}

// ThrottleOptions configures a Throttle.
type ThrottleOptions struct {
	// FreeFailures consecutive failures of one username pass without delay;
	// 0 disables per-account throttling.
	FreeFailures int
	// BaseDelay is the first delay once FreeFailures is reached (default 1s).
	BaseDelay time.Duration
	// MaxDelay caps the delay (default 5m).
	MaxDelay time.Duration
	// OnThrottled is called for every refused attempt (a metric).
	OnThrottled func()
	Now         func() time.Time
}

// ThrottledError refuses a login attempt made too early.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins, retry in %s", e.RetryAfter)
}

// NewThrottle returns a per-account throttle; nil (allow all) when
// opts.FreeFailures is 0.
func NewThrottle(opts ThrottleOptions) *Throttle {
	if opts.FreeFailures <= 0 {
		return nil
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnThrottled == nil {
		opts.OnThrottled = func() {}
	}
	return &Throttle{free: opts.FreeFailures, base: opts.BaseDelay, max: opts.MaxDelay, now: opts.Now,
		onThrott: opts.OnThrottled, state: make(map[string]*failures)}
}

const (
	throttleSweepEvery = 1024
	// maxTracked bounds the usernames tracked. Past it the ones not
	// waiting out a delay are forgotten: a flood of made-up names cannot
	// grow memory, and it cannot free a username under attack either, since
	// that one is waiting (each such entry cost the attacker
	// FreeFailures attempts).
	maxTracked = 100_000
)

// begin admits an attempt for key or says how long to wait. An admitted
// attempt counts as a failure at once (and sets the next delay) so that
// parallel guesses cannot all slip in before the first one is judged;
// succeed takes it back.
func (t *Throttle) begin(key string) error {
	if t == nil {
		return nil
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if t.calls%throttleSweepEvery == 0 {
		for k, f := range t.state {
			if now.Sub(f.last) > t.max && !now.Before(f.until) {
				delete(t.state, k)
			}
		}
	}
	f := t.state[key]
	if f == nil {
		if len(t.state) >= maxTracked {
			for k, f := range t.state {
				if !now.Before(f.until) {
					delete(t.state, k)
				}
			}
		}
		f = &failures{}
		t.state[key] = f
	} else if now.Sub(f.last) > t.max && !now.Before(f.until) {
		// Quiet for longer than the longest delay: start afresh, so old
		// typos never add up to a delay.
		*f = failures{}
	}
	if wait := f.until.Sub(now); wait > 0 {
		t.onThrott()
		return &ThrottledError{RetryAfter: wait}
	}
	f.n++
	f.last = now
	if f.n >= t.free {
		f.until = now.Add(t.delay(f.n - t.free))
	}
	return nil
}

// delay is base·2^k capped at max.
func (t *Throttle) delay(k int) time.Duration {
	d := t.base
	for range k {
		d *= 2
		if d >= t.max {
			return t.max
		}
	}
	return min(d, t.max)
}

// succeed forgets key's failures after a correct password.
func (t *Throttle) succeed(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.state, key)
	t.mu.Unlock()
}

// Len is the number of usernames tracked, for tests.
func (t *Throttle) Len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.state)
}
