// Package ratelimit keeps one token bucket per key (a user, a client IP).
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token buckets, one per key, created on first use and
// forgotten once idle long enough to have refilled, so memory stays bounded
// by the keys active recently. A nil *Keyed allows everything.
type Keyed struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket untouched this long is full again
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const sweepEvery = 4096 // Allow calls between sweeps of idle buckets

// New returns buckets refilling at perSecond with room for burst; nil when
// perSecond is 0, meaning unlimited.
func New(perSecond, burst int) *Keyed {
	if perSecond <= 0 {
		return nil
	}
	idle := time.Duration(float64(burst)/float64(perSecond)*float64(time.Second)) + time.Second
	return newKeyed(rate.Limit(perSecond), burst, idle)
}

// NewEvery returns buckets gaining one token every interval, with room for
// burst: for rates below one per second (one typing notice per 2 s). nil
// when interval is not positive, meaning unlimited.
func NewEvery(interval time.Duration, burst int) *Keyed {
	if interval <= 0 {
		return nil
	}
	return newKeyed(rate.Every(interval), burst, time.Duration(burst)*interval+time.Second)
}

func newKeyed(limit rate.Limit, burst int, idle time.Duration) *Keyed {
	return &Keyed{limit: limit, burst: burst, idle: idle, now: time.Now, buckets: make(map[string]*bucket)}
}

// Allow takes one token from key's bucket, reporting whether there was one.
func (k *Keyed) Allow(key string) bool {
	if k == nil {
		return true
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if k.calls%sweepEvery == 0 {
		for key, b := range k.buckets {
			if now.Sub(b.seen) > k.idle {
				delete(k.buckets, key)
			}
		}
	}
	b, ok := k.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(k.limit, k.burst)}
		k.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// Len is the number of buckets held, for tests and metrics.
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}
