package ids

import (
	"sync"
	"testing"
	"time"
)

func TestGeneratorMonotonicUnderClockTrouble(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		times []time.Time
		calls int
	}{
		{"clock stalls past sequence space", []time.Time{base}, 3 * (maxSeq + 1)},
		{"clock goes backwards", []time.Time{base, base.Add(-time.Second), base.Add(-2 * time.Second)}, 10},
		{"clock advances", []time.Time{base, base.Add(time.Millisecond), base.Add(2 * time.Millisecond)}, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewGenerator(7)
			if err != nil {
				t.Fatal(err)
			}
			i := 0
			g.now = func() time.Time {
				v := tc.times[min(i, len(tc.times)-1)]
				i++
				return v
			}
			var prev uint64
			for n := 0; n < tc.calls; n++ {
				id := g.Next()
				if id <= prev {
					t.Fatalf("call %d: id %d not greater than %d", n, id, prev)
				}
				if node := id >> seqBits & maxNode; node != 7 {
					t.Fatalf("node bits = %d, want 7", node)
				}
				prev = id
			}
			if got := Time(prev); got.Before(tc.times[0].Add(-3 * time.Second)) {
				t.Fatalf("Time(%d) = %v, too far before %v", prev, got, tc.times[0])
			}
		})
	}
}

func TestGeneratorConcurrentUnique(t *testing.T) {
	g, err := NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 2000
	var mu sync.Mutex
	seen := make(map[uint64]bool, workers*per)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]uint64, 0, per)
			for i := 0; i < per; i++ {
				local = append(local, g.Next())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate id %d", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}

func TestFormatParse(t *testing.T) {
	for _, id := range []uint64{0, 1, 0xfff, 1 << 63, ^uint64(0)} {
		s := Format(id)
		if len(s) != 16 {
			t.Fatalf("Format(%d) = %q, want 16 digits", id, s)
		}
		back, err := Parse(s)
		if err != nil || back != id {
			t.Fatalf("Parse(Format(%d)) = %d, %v", id, back, err)
		}
	}
	for _, bad := range []string{"", "123", "zzzzzzzzzzzzzzzz", "00000000000000000"} {
		if _, err := Parse(bad); err == nil {
			t.Fatalf("Parse(%q) succeeded", bad)
		}
	}
	if Format(1) >= Format(2) || Format(0xff) >= Format(0x100) {
		t.Fatal("formatted ids do not sort like numbers")
	}
}

func TestUserIDs(t *testing.T) {
	id := NewUserID()
	if !ValidUserID(id) {
		t.Fatalf("NewUserID() = %q is not valid", id)
	}
	for _, bad := range []string{"", "alice", "users/bob/inbox0000", "+aaaaaaaaaaaaaaaaaaa", "AAAAAAAAAAAAAAAAAAAA", "wwwwwwwwwwwwwwwwwwww"} {
		if ValidUserID(bad) {
			t.Fatalf("ValidUserID(%q) = true", bad)
		}
	}
}
