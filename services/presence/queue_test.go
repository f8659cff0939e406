package presence

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// hangTimeout only turns a deadlock into a failure; nothing depends on it.
const hangTimeout = 20 * time.Second

// within fails the test if f does not return within hangTimeout: the
// calls under test must never wait for a publish.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(hangTimeout):
		t.Fatalf("%s blocked behind a publish", what)
	}
}

func waitEntered(t *testing.T, rec *recorder, uid string) {
	t.Helper()
	select {
	case got := <-rec.entered:
		if got != uid {
			t.Fatalf("publish of %s started, want %s", got, uid)
		}
	case <-time.After(hangTimeout):
		t.Fatalf("no publish of %s started", uid)
	}
}

// TestSlowPublishBlocksNobodyElse: while one user's publish hangs (a fan-out
// to many watchers), other users connect, disconnect and are published,
// and the slow user's own state changes and lookups go on.
func TestSlowPublishBlocksNobodyElse(t *testing.T) {
	s, _, rec, _ := setup(t)
	release := rec.holdUser("slow")
	within(t, "Connected(slow)", func() { s.Connected("slow", "slow/a") })
	waitEntered(t, rec, "slow")

	within(t, "other users and lookups", func() {
		g := s.Connected("other", "other/a")
		s.Connected("slow", "slow/b")
		if n := s.Devices("slow"); n != 2 {
			t.Errorf("Devices(slow) = %d, want 2", n)
		}
		if v := s.View("slow"); v != online(2) {
			t.Errorf("View(slow) = %+v, want online(2)", v)
		}
		s.Disconnected("other", "other/a", g, CauseDisconnect)
		s.Connected("other", "other/b")
	})
	// other's publishes complete while slow's first one still hangs.
	eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.out) > 0 && rec.out[len(rec.out)-1].uid == "other"
	})
	release()
	s.out.flush()
	expect(t, rec.of("slow"), online(1), online(2))
}

// TestCoalescing: states that pile up behind a running publish of the same
// user collapse into the newest, published after it; the last published
// state is the current one.
func TestCoalescing(t *testing.T) {
	tests := []struct {
		name  string
		steps func(s *Service)
		want  []View // after the held online(1)
	}{
		{"newest wins", func(s *Service) {
			s.Connected("u", "u/b")
			s.Connected("u", "u/c")
			s.Connected("u", "u/d")
		}, []View{online(4)}},
		{"back to what is being published", func(s *Service) {
			g := s.Connected("u", "u/b")
			s.Disconnected("u", "u/b", g, CauseDisconnect)
		}, []View{online(1)}},
		{"nothing new", func(*Service) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, rec, _ := setup(t)
			release := rec.holdUser("u")
			s.Connected("u", "u/a")
			waitEntered(t, rec, "u")
			tt.steps(s)
			release()
			got := rec.take()
			expect(t, got, append([]View{online(1)}, tt.want...)...)
			if last := got[len(got)-1]; last != s.View("u") {
				t.Fatalf("last published %+v, current %+v", last, s.View("u"))
			}
		})
	}
}

// TestOrderPerUser: many users changing concurrently, with publishes that
// take varying time on several workers; each user's published states are a
// subsequence of its changes in order, ending with its current state.
func TestOrderPerUser(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			pub := &slowRecorder{seen: map[string][]int{}}
			s := New(pub, Options{Grace: time.Hour, Workers: workers})
			defer s.Close()
			const users, changes = 8, 200
			var wg sync.WaitGroup
			for u := range users {
				uid := fmt.Sprint("u", u)
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Devices go 1, 2, …, changes: each state is larger
					// than the one before, so order is visible in Devices.
					for d := range changes {
						s.Connected(uid, fmt.Sprintf("%s/%d", uid, d))
					}
				}()
			}
			wg.Wait()
			s.out.flush()
			for u := range users {
				uid := fmt.Sprint("u", u)
				seq := pub.get(uid)
				for i := 1; i < len(seq); i++ {
					if seq[i] <= seq[i-1] {
						t.Fatalf("%s published devices %v out of order", uid, seq)
					}
				}
				if len(seq) == 0 || seq[len(seq)-1] != changes || s.View(uid).Devices != changes {
					t.Fatalf("%s: last published %v, view %+v; want %d devices", uid, seq, s.View(uid), changes)
				}
			}
		})
	}
}

// slowRecorder records the device counts published per user, taking a
// little random time for each publish.
type slowRecorder struct {
	mu   sync.Mutex
	seen map[string][]int
}

func (r *slowRecorder) PublishPresence(uid string, payload []byte) error {
	var v View
	if err := json.Unmarshal(payload, &v); err != nil {
		return err
	}
	for range rand.IntN(100) { // a fan-out's duration, varied
		runtime.Gosched()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[uid] = append(r.seen[uid], v.Devices)
	return nil
}

func (r *slowRecorder) get(uid string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.seen[uid]...)
}

// TestClosePublishesPending: Close publishes what is queued before it
// returns, so the retained message is current when the broker stops.
func TestClosePublishesPending(t *testing.T) {
	s, _, rec, _ := setup(t)
	release := rec.holdUser("u")
	s.Connected("u", "u/a")
	waitEntered(t, rec, "u")
	s.Connected("u", "u/b")
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	release()
	select {
	case <-closed:
	case <-time.After(hangTimeout):
		t.Fatal("Close did not return")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.out); n != 2 || rec.out[1].v != online(2) {
		t.Fatalf("published %+v, want online(1) then online(2)", rec.out)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPublishInterval: after a publish, a user's next one waits for the
// interval; the changes in between collapse into the newest, other users
// are not held up, and Close publishes what waits at once.
func TestPublishInterval(t *testing.T) {
	const interval = time.Second
	tests := []struct {
		name    string
		steps   func(s *Service, clk *fakeClock, rec *recorder)
		want    []View // u's publishes after its first online(1)
		coalesc int
	}{
		{"changes within the interval collapse", func(s *Service, clk *fakeClock, rec *recorder) {
			s.Connected("u", "u/b")
			s.Connected("u", "u/c")
			expect(t, rec.take()) // both wait for the interval
			clk.advance(interval)
		}, []View{online(3)}, 1},
		{"a change after the interval is published at once", func(s *Service, clk *fakeClock, rec *recorder) {
			clk.advance(interval)
			s.Connected("u", "u/b")
		}, []View{online(2)}, 0},
		{"back to the published state before the interval ends", func(s *Service, clk *fakeClock, rec *recorder) {
			g := s.Connected("u", "u/b")
			s.Disconnected("u", "u/b", g, CauseDisconnect)
			clk.advance(interval)
		}, []View{online(1)}, 1},
		{"close publishes what waits", func(s *Service, clk *fakeClock, rec *recorder) {
			s.Connected("u", "u/b")
			s.Close()
		}, []View{online(2)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Unix(1000, 0)}
			rec := &recorder{}
			m := counts{}
			s := New(rec, Options{Grace: grace, Clock: clk, Metrics: m, PublishInterval: interval})
			rec.svc = s
			t.Cleanup(s.Close)
			s.Connected("u", "u/a")
			expect(t, rec.take(), online(1))
			tt.steps(s, clk, rec)
			// Another user is published at once whatever u waits for.
			s.Connected("v", "v/a")
			s.out.flush()
			expect(t, rec.of("u"), tt.want...)
			if m["coalesced"] != tt.coalesc {
				t.Fatalf("coalesced = %d, want %d", m["coalesced"], tt.coalesc)
			}
			if wantV := []View{online(1)}; tt.name != "close publishes what waits" {
				expect(t, rec.of("v"), wantV...)
			}
		})
	}
}

// of returns what was published for uid since the last take.
func (r *recorder) of(uid string) []View {
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []View
	for _, p := range r.out {
		if p.uid == uid {
			vs = append(vs, p.v)
		}
	}
	return vs
}
