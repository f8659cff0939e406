package presence

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func (t *fakeTimer) Stop() bool {
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// advance moves the clock and runs the timers that came due, outside the lock.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.stopped && !t.fired && !t.at.After(c.now) {
			t.fired = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

type published struct {
	uid string
	v   View
}

// recorder is the Publisher of the tests. A publish of a user in hold waits
// until the test releases it, as a fan-out to many watchers would.
type recorder struct {
	svc *Service // flushed before take

	mu      sync.Mutex
	out     []published
	hold    map[string]chan struct{} // closed to release
	entered chan string              // a held publish started
}

func (r *recorder) PublishPresence(uid string, payload []byte) error {
	var v View
	if err := json.Unmarshal(payload, &v); err != nil {
		return err
	}
	r.mu.Lock()
	gate := r.hold[uid]
	r.mu.Unlock()
	if gate != nil {
		r.entered <- uid
		<-gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, published{uid, v})
	return nil
}

// holdUser makes publishes of uid wait until the returned func is called.
func (r *recorder) holdUser(uid string) (release func()) {
	gate := make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold == nil {
		r.hold = map[string]chan struct{}{}
		r.entered = make(chan string, 64)
	}
	r.hold[uid] = gate
	return func() {
		r.mu.Lock()
		delete(r.hold, uid)
		r.mu.Unlock()
		close(gate)
	}
}

// take waits until everything queued is published, then returns and
// forgets what was published so far.
func (r *recorder) take() []View {
	r.svc.out.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []View
	for _, p := range r.out {
		vs = append(vs, p.v)
	}
	r.out = nil
	return vs
}

type counts map[string]int

func (c counts) ObservePresenceTransition(cause string) { c[cause]++ }
func (c counts) ObservePresenceCoalesced()              { c["coalesced"]++ }

const grace = 30 * time.Second

func setup(t *testing.T) (*Service, *fakeClock, *recorder, counts) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec := &recorder{}
	m := counts{}
	s := New(rec, Options{Grace: grace, Clock: clk, Metrics: m})
	rec.svc = s
	t.Cleanup(s.Close)
	return s, clk, rec, m
}

func expect(t *testing.T, got []View, want ...View) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("published %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("published %+v, want %+v", got, want)
		}
	}
}

func online(n int) View { return View{Status: StatusOnline, Devices: n} }

func TestTwoDevices(t *testing.T) {
	s, clk, rec, m := setup(t)
	g1 := s.Connected("u", "u/phone")
	expect(t, rec.take(), online(1))
	g2 := s.Connected("u", "u/laptop")
	expect(t, rec.take(), online(2))

	s.Disconnected("u", "u/phone", g1, CauseWill)
	expect(t, rec.take(), online(1))

	clk.advance(5 * time.Second)
	left := clk.Now()
	s.Disconnected("u", "u/laptop", g2, CauseKeepAlive)
	clk.advance(grace - time.Second)
	expect(t, rec.take())
	if v := s.View("u"); v != online(1) {
		t.Fatalf("during grace View = %+v", v)
	}
	if users, devices := s.Stats(); users != 1 || devices != 0 {
		t.Fatalf("Stats during grace = %d, %d", users, devices)
	}
	clk.advance(time.Second)
	off := View{Status: StatusOffline, LastSeen: left.Format(time.RFC3339)}
	expect(t, rec.take(), off)
	if v := s.View("u"); v != off {
		t.Fatalf("View = %+v", v)
	}
	if users, devices := s.Stats(); users != 0 || devices != 0 {
		t.Fatalf("Stats = %d, %d", users, devices)
	}
	if m["will"] != 1 || m["keep-alive"] != 1 {
		t.Fatalf("metrics = %v", m)
	}
}

func TestReconnectWithinGrace(t *testing.T) {
	s, clk, rec, _ := setup(t)
	g := s.Connected("u", "u/phone")
	rec.take()
	s.Disconnected("u", "u/phone", g, CauseDisconnect)
	clk.advance(grace / 2)
	s.Connected("u", "u/phone")
	clk.advance(2 * grace)
	expect(t, rec.take()) // nothing at all
	if v := s.View("u"); v != online(1) {
		t.Fatalf("View = %+v", v)
	}
}

func TestTakeover(t *testing.T) {
	for _, lateDisconnect := range []bool{true, false} {
		s, clk, rec, m := setup(t)
		old := s.Connected("u", "u/phone")
		rec.take()
		if lateDisconnect {
			// mochi: the new session is established, then the old
			// connection's OnDisconnect arrives.
			s.Connected("u", "u/phone")
			s.Disconnected("u", "u/phone", old, CauseTakeover)
		} else {
			s.Disconnected("u", "u/phone", old, CauseTakeover)
			s.Connected("u", "u/phone")
		}
		clk.advance(2 * grace)
		expect(t, rec.take())
		if _, devices := s.Stats(); devices != 1 {
			t.Fatalf("devices = %d", devices)
		}
		if m["takeover"] != 1 {
			t.Fatalf("metrics = %v", m)
		}
	}
}

func TestStaleGenerationIgnored(t *testing.T) {
	s, clk, rec, _ := setup(t)
	old := s.Connected("u", "u/phone")
	s.Connected("u", "u/phone") // reconnected; the old one's end is reported late
	rec.take()
	s.Disconnected("u", "u/phone", old, CauseWill)
	clk.advance(2 * grace)
	expect(t, rec.take())
	if v := s.View("u"); v != online(1) {
		t.Fatalf("View = %+v", v)
	}
}

func TestZeroGrace(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	rec := &recorder{}
	s := New(rec, Options{Clock: clk})
	rec.svc = s
	t.Cleanup(s.Close)
	g := s.Connected("u", "u/a")
	expect(t, rec.take(), online(1))
	s.Disconnected("u", "u/a", g, CauseDisconnect)
	expect(t, rec.take(), View{Status: StatusOffline, LastSeen: time.Unix(1000, 0).UTC().Format(time.RFC3339)})
}

func TestRestore(t *testing.T) {
	s, clk, rec, _ := setup(t)
	s.Restore("gone", []byte(`{"status":"online","devices":2}`))
	s.Restore("back", []byte(`{"status":"online","devices":1}`))
	s.Restore("off", []byte(`{"status":"offline","last_seen":"2025-01-01T00:00:00Z","devices":0}`))
	s.Restore("raw", []byte(`offline`))
	expect(t, rec.take(), View{Status: StatusOffline})
	if users, _ := s.Stats(); users != 2 {
		t.Fatalf("online users after restore = %d", users)
	}

	s.Connected("back", "back/a") // same aggregate as retained: nothing to publish
	expect(t, rec.take())
	restart := clk.Now()
	clk.advance(grace)
	expect(t, rec.take(), View{Status: StatusOffline, LastSeen: restart.Format(time.RFC3339)})
	if v := s.View("off"); v.LastSeen != "2025-01-01T00:00:00Z" {
		t.Fatalf("View(off) = %+v", v)
	}

	// Live state wins over a retained message read after it.
	s.Restore("back", []byte(`{"status":"offline","devices":0}`))
	if v := s.View("back"); v != online(1) {
		t.Fatalf("View(back) = %+v", v)
	}
	if v := s.View("nobody"); v.Status != StatusOffline {
		t.Fatalf("View(nobody) = %+v", v)
	}
}

func TestClose(t *testing.T) {
	s, clk, rec, _ := setup(t)
	g := s.Connected("u", "u/a")
	rec.take()
	s.Disconnected("u", "u/a", g, CauseWill)
	s.Close()
	clk.advance(2 * grace)
	s.Connected("u", "u/b")
	expect(t, rec.take())
}
