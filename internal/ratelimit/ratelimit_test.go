package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

func TestKeyed(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		rate, burst int
		steps       []struct {
			at    time.Duration
			key   string
			allow bool
		}
	}{
		{"burst then refill", 2, 3, []struct {
			at    time.Duration
			key   string
			allow bool
		}{
			{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false},
			{0, "b", true}, // keys are independent
			{500 * time.Millisecond, "a", true}, {500 * time.Millisecond, "a", false},
			{2 * time.Second, "a", true}, {2 * time.Second, "a", true}, {2 * time.Second, "a", true}, {2 * time.Second, "a", false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := New(tc.rate, tc.burst)
			var now time.Time
			k.now = func() time.Time { return now }
			for i, s := range tc.steps {
				now = base.Add(s.at)
				if got := k.Allow(s.key); got != s.allow {
					t.Fatalf("step %d (%v, %s): Allow = %v, want %v", i, s.at, s.key, got, s.allow)
				}
			}
		})
	}
}

func TestUnlimitedAndIdleEviction(t *testing.T) {
	var k *Keyed = New(0, 10)
	for i := 0; i < 1000; i++ {
		if !k.Allow("x") {
			t.Fatal("unlimited limiter refused")
		}
	}
	k = New(10, 10)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k.now = func() time.Time { return now }
	for i := 0; i < sweepEvery-1; i++ {
		k.Allow(strconv.Itoa(i))
	}
	now = now.Add(time.Hour)
	k.Allow("fresh") // this call sweeps
	if n := k.Len(); n != 1 {
		t.Fatalf("%d buckets after sweep, want 1", n)
	}
}

func TestEvery(t *testing.T) {
	if NewEvery(0, 1) != nil {
		t.Fatal("NewEvery(0) should be unlimited (nil)")
	}
	k := NewEvery(2*time.Second, 1)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k.now = func() time.Time { return now }
	steps := []struct {
		at    time.Duration
		allow bool
	}{{0, true}, {time.Second, false}, {1999 * time.Millisecond, false}, {2 * time.Second, true}, {3 * time.Second, false}, {4 * time.Second, true}}
	base := now
	for i, s := range steps {
		now = base.Add(s.at)
		if got := k.Allow("u\x00chat"); got != s.allow {
			t.Fatalf("step %d (%v): Allow = %v, want %v", i, s.at, got, s.allow)
		}
	}
}
