package auth

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func retryAfter(err error) time.Duration {
	var te *ThrottledError
	if errors.As(err, &te) {
		return te.RetryAfter
	}
	return 0
}

func TestThrottleBackoff(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	refused := 0
	th := NewThrottle(ThrottleOptions{FreeFailures: 3, BaseDelay: time.Second, MaxDelay: 8 * time.Second,
		Now: c.now, OnThrottled: func() { refused++ }})
	// Each step: wait, then one attempt; want the wait the attempt is told
	// (0 = admitted, which counts a failure).
	steps := []struct {
		wait, want time.Duration
	}{
		{0, 0}, {0, 0}, {0, 0}, // three free failures, the third arms 1s
		{0, time.Second},
		{500 * time.Millisecond, 500 * time.Millisecond}, // refused attempts do not count
		{500 * time.Millisecond, 0},                      // admitted: 4th failure arms 2s
		{time.Second, time.Second},
		{time.Second, 0},     // 5th arms 4s
		{4 * time.Second, 0}, // 6th arms 8s (the cap)
		{8 * time.Second, 0}, // 7th: still 8s, never more
		{7 * time.Second, time.Second},
	}
	for i, st := range steps {
		c.add(st.wait)
		if got := retryAfter(th.begin("alice")); got != st.want {
			t.Fatalf("step %d: retry after %v, want %v", i, got, st.want)
		}
	}
	if refused != 4 {
		t.Fatalf("OnThrottled called %d times, want 4", refused)
	}
	// Other usernames are not affected.
	if err := th.begin("bob"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// The lock ends at most MaxDelay after the last counted failure, and a
	// quiet period as long forgets the history.
	c.add(8*time.Second + time.Millisecond)
	for i := range 3 {
		if err := th.begin("alice"); err != nil {
			t.Fatalf("after a quiet period, attempt %d: %v", i, err)
		}
	}
}

func TestThrottleSuccessResets(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	th := NewThrottle(ThrottleOptions{FreeFailures: 2, Now: c.now})
	_ = th.begin("alice")
	_ = th.begin("alice")
	if retryAfter(th.begin("alice")) == 0 {
		t.Fatal("third attempt admitted at once")
	}
	c.add(time.Second)
	if err := th.begin("alice"); err != nil {
		t.Fatal(err)
	}
	th.succeed("alice")
	for i := range 2 {
		if err := th.begin("alice"); err != nil {
			t.Fatalf("after success, attempt %d: %v", i, err)
		}
	}
	if th.Len() != 1 {
		t.Fatalf("tracking %d usernames, want 1", th.Len())
	}
}

// Parallel guesses are counted as they start, so no more than the free
// ones get through however many arrive at once.
func TestThrottleParallel(t *testing.T) {
	th := NewThrottle(ThrottleOptions{FreeFailures: 5, MaxDelay: time.Minute})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
	)
	for range 64 {
		wg.Go(func() {
			if th.begin("alice") == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 5 {
		t.Fatalf("%d parallel attempts admitted, want 5", admitted)
	}
}

func TestThrottleDisabled(t *testing.T) {
	var th *Throttle = NewThrottle(ThrottleOptions{})
	for range 100 {
		if err := th.begin("alice"); err != nil {
			t.Fatal(err)
		}
	}
}
