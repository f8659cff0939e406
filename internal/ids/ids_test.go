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

// Consecutive user ids must not follow from one another: xids shared their
// first 16 characters (time, machine, process) and counted up in the rest.
func TestNewUserIDRandom(t *testing.T) {
	const n = 2000
	seen := make(map[string]bool, n)
	prefixes := make(map[string]int)
	prev := NewUserID()
	for range n {
		id := NewUserID()
		if !ValidUserID(id) {
			t.Fatalf("NewUserID() = %q, not a valid user id", id)
		}
		if seen[id] {
			t.Fatalf("NewUserID() repeated %q", id)
		}
		seen[id] = true
		prefixes[id[:4]]++
		if id[:8] == prev[:8] {
			t.Fatalf("consecutive ids %q and %q share an 8-character prefix", prev, id)
		}
		prev = id
	}
	// 20 bits of prefix over 2000 ids: a repeat at all is unlikely, many
	// repeats mean the ids are not uniformly random.
	for p, c := range prefixes {
		if c > 3 {
			t.Fatalf("prefix %q occurs %d times in %d ids", p, c, n)
		}
	}
}

func TestValidUserIDAcceptsOldXids(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"9m4e2mr0ui3e8a215n4g", true}, // an xid, as ids were made before
		{"00000000000000000000", true},
		{"9m4e2mr0ui3e8a215n4w", false}, // w is outside base32hex
		{"9M4E2MR0UI3E8A215N4G", false},
		{"9m4e2mr0ui3e8a215n4", false},
		{"9m4e2mr0ui3e8a215n4g0", false},
	} {
		if got := ValidUserID(tc.id); got != tc.want {
			t.Errorf("ValidUserID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
