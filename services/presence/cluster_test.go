package presence

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// byUser waits until everything queued is published and returns it per
// user, in publishing order, forgetting it.
func (r *recorder) byUser() map[string][]View {
	r.svc.out.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	got := map[string][]View{}
	for _, p := range r.out {
		got[p.uid] = append(got[p.uid], p.v)
	}
	r.out = nil
	return got
}

func offlineAt(t time.Time) View {
	return View{Status: StatusOffline, LastSeen: t.UTC().Format(time.RFC3339)}
}

// TestRemoteDevices drives one user through local and remote devices; each
// step lists what it publishes, and the end state is checked.
func TestRemoteDevices(t *testing.T) {
	type env struct {
		s    *Service
		clk  *fakeClock
		gens map[string]uint64
		mark time.Time // set by steps that record a departure time
	}
	connect := func(id string) func(*env) {
		return func(e *env) { e.gens[id] = e.s.Connected("u", id) }
	}
	disconnect := func(id string, c Cause) func(*env) {
		return func(e *env) { e.mark = e.clk.Now(); e.s.Disconnected("u", id, e.gens[id], c) }
	}
	remote := func(node string, n int) func(*env) {
		return func(e *env) { e.mark = e.clk.Now(); e.s.SetRemote(node, "u", n) }
	}
	drop := func(node string) func(*env) {
		return func(e *env) { e.mark = e.clk.Now(); e.s.DropNode(node) }
	}
	wait := func(d time.Duration) func(*env) { return func(e *env) { e.clk.advance(d) } }
	type step struct {
		do   func(*env)
		want []View
		// offline: this step publishes offline with last_seen at the
		// latest mark (appended after want).
		offline bool
	}
	tests := []struct {
		name        string
		steps       []step
		view        View // zero: offline at the latest mark
		devices     int
		users, here int // Stats
		moved       int // transitions counted as moved
	}{
		{
			name: "remote devices keep the user online after the local one leaves",
			steps: []step{
				{do: connect("u/phone"), want: []View{online(1)}},
				{do: remote("n2", 1), want: []View{online(2)}},
				{do: disconnect("u/phone", CauseWill), want: []View{online(1)}},
				{do: wait(2 * grace)},
			},
			view: online(1), devices: 1, users: 1, here: 0,
		},
		{
			name: "the total is published",
			steps: []step{
				{do: connect("u/phone"), want: []View{online(1)}},
				{do: connect("u/laptop"), want: []View{online(2)}},
				{do: remote("n2", 3), want: []View{online(5)}},
				{do: remote("n3", 1), want: []View{online(6)}},
				{do: remote("n2", 1), want: []View{online(4)}},
				{do: remote("n3", 1)}, // no change
			},
			view: online(4), devices: 4, users: 1, here: 2,
		},
		{
			name: "a user never seen is created by a remote device",
			steps: []step{
				{do: remote("n2", 2), want: []View{online(2)}},
			},
			view: online(2), devices: 2, users: 1, here: 0,
		},
		{
			name: "a remote count of 0 for a user never seen changes nothing",
			steps: []step{
				{do: remote("n2", 0)},
				{do: remote("n2", -1)},
			},
			view: View{Status: StatusOffline},
		},
		{
			name: "the last remote device leaving starts the grace period",
			steps: []step{
				{do: remote("n2", 1), want: []View{online(1)}},
				{do: remote("n2", 0)},
				{do: wait(grace - time.Second)},
				{do: wait(time.Second), offline: true},
			},
		},
		{
			name: "a device reconnecting on another node within grace never publishes offline",
			steps: []step{
				{do: connect("u/phone"), want: []View{online(1)}},
				{do: disconnect("u/phone", CauseWill)},
				{do: wait(grace / 2)},
				{do: remote("n2", 1)}, // same aggregate as before: nothing to publish
				{do: wait(2 * grace)},
			},
			view: online(1), devices: 1, users: 1,
		},
		{
			name: "a local device within grace after the last remote one left",
			steps: []step{
				{do: remote("n2", 1), want: []View{online(1)}},
				{do: remote("n2", 0)},
				{do: wait(grace / 2)},
				{do: connect("u/phone")},
				{do: wait(2 * grace)},
			},
			view: online(1), devices: 1, users: 1, here: 1,
		},
		{
			name: "moved counts the device out: the other node has it",
			steps: []step{
				{do: connect("u/phone"), want: []View{online(1)}},
				{do: remote("n2", 1), want: []View{online(2)}},
				{do: disconnect("u/phone", CauseMoved), want: []View{online(1)}},
				{do: wait(2 * grace)},
			},
			view: online(1), devices: 1, users: 1, moved: 1,
		},
		{
			name: "moved before the other node's report dips through the grace period",
			steps: []step{
				{do: connect("u/phone"), want: []View{online(1)}},
				{do: disconnect("u/phone", CauseMoved)},
				{do: remote("n2", 1)},
				{do: wait(2 * grace)},
			},
			view: online(1), devices: 1, users: 1, moved: 1,
		},
		{
			name: "moved with no device elsewhere goes offline after grace",
			steps: []step{
				{do: connect("u/phone"), want: []View{online(1)}},
				{do: disconnect("u/phone", CauseMoved)},
				{do: wait(grace), offline: true},
			},
			moved: 1,
		},
		{
			name: "a dropped node holding the last device starts the grace period",
			steps: []step{
				{do: remote("n2", 2), want: []View{online(2)}},
				{do: drop("n2")},
				{do: wait(grace - time.Second)},
				{do: wait(time.Second), offline: true},
			},
		},
		{
			name: "a node reporting again after it was dropped counts again",
			steps: []step{
				{do: remote("n2", 1), want: []View{online(1)}},
				{do: drop("n2")},
				{do: remote("n2", 1)},
				{do: drop("n2")},
				{do: wait(grace), offline: true},
				{do: remote("n2", 1), want: []View{online(1)}},
			},
			view: online(1), devices: 1, users: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk, rec, m := setup(t)
			e := &env{s: s, clk: clk, gens: map[string]uint64{}}
			for i, st := range tt.steps {
				st.do(e)
				want := st.want
				if st.offline {
					want = append(want, offlineAt(e.mark))
				}
				if got := rec.take(); len(got) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("step %d published %+v, want %+v", i, got, want)
				}
			}
			view := tt.view
			if view == (View{}) {
				view = offlineAt(e.mark)
			}
			if v := s.View("u"); v != view {
				t.Fatalf("View = %+v, want %+v", v, view)
			}
			if n := s.Devices("u"); n != tt.devices {
				t.Fatalf("Devices = %d, want %d", n, tt.devices)
			}
			if users, here := s.Stats(); users != tt.users || here != tt.here {
				t.Fatalf("Stats = %d, %d, want %d, %d", users, here, tt.users, tt.here)
			}
			if m["moved"] != tt.moved {
				t.Fatalf("moved transitions = %d, want %d", m["moved"], tt.moved)
			}
		})
	}
}

// TestDropNode drops a node holding devices of several users at once:
// only the users left with no device anywhere start a grace period.
func TestDropNode(t *testing.T) {
	s, clk, rec, _ := setup(t)
	users := []struct {
		uid          string
		local        int
		n2, n3       int
		afterDrop    []View // published by DropNode
		afterGrace   []View // published when the grace period ran out
		devicesAfter int
	}{
		{uid: "only-n2", n2: 2, afterGrace: []View{offlineAt(clk.Now())}},
		{uid: "n2-and-local", local: 1, n2: 1, afterDrop: []View{online(1)}, devicesAfter: 1},
		{uid: "n2-and-n3", n2: 3, n3: 2, afterDrop: []View{online(2)}, devicesAfter: 2},
		{uid: "only-n3", n3: 1, devicesAfter: 1},
		{uid: "only-local", local: 2, devicesAfter: 2},
	}
	for _, u := range users {
		for i := range u.local {
			s.Connected(u.uid, fmt.Sprintf("%s/%d", u.uid, i))
		}
		s.SetRemote("n2", u.uid, u.n2)
		s.SetRemote("n3", u.uid, u.n3)
	}
	rec.take()

	s.DropNode("n2")
	s.DropNode("never-seen")
	got := rec.byUser()
	for _, u := range users {
		if fmt.Sprint(got[u.uid]) != fmt.Sprint(u.afterDrop) {
			t.Fatalf("%s: DropNode published %+v, want %+v", u.uid, got[u.uid], u.afterDrop)
		}
		if n := s.Devices(u.uid); n != u.devicesAfter {
			t.Fatalf("%s: Devices = %d, want %d", u.uid, n, u.devicesAfter)
		}
		if v := s.View(u.uid); v.Status != StatusOnline {
			t.Fatalf("%s: offline during the grace period: %+v", u.uid, v)
		}
	}
	clk.advance(grace)
	got = rec.byUser()
	for _, u := range users {
		if fmt.Sprint(got[u.uid]) != fmt.Sprint(u.afterGrace) {
			t.Fatalf("%s: grace published %+v, want %+v", u.uid, got[u.uid], u.afterGrace)
		}
	}
	if online, here := s.Stats(); online != len(users)-1 || here != 3 {
		t.Fatalf("Stats = %d, %d, want %d, 3", online, here, len(users)-1)
	}
	if len(s.remote["n2"]) != 0 || len(s.remote["n3"]) != 2 {
		t.Fatalf("remote index = %v", s.remote)
	}
}

type localCall struct {
	uid     string
	devices int
}

type localRecorder struct {
	mu    sync.Mutex
	calls []localCall
}

func (l *localRecorder) LocalDevices(uid string, devices int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, localCall{uid, devices})
}

func (l *localRecorder) take() []localCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	return c
}

func setupLocal(t *testing.T) (*Service, *fakeClock, *localRecorder) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec := &recorder{}
	obs := &localRecorder{}
	s := New(rec, Options{Grace: grace, Clock: clk, Local: obs})
	rec.svc = s
	t.Cleanup(s.Close)
	return s, clk, obs
}

// TestLocalObserver checks that every change of this node's count, and
// only those, reaches the observer, in order.
func TestLocalObserver(t *testing.T) {
	s, clk, obs := setupLocal(t)
	gens := map[string]uint64{}
	steps := []struct {
		name     string
		do       func()
		want     []localCall
		snapshot map[string]int
	}{
		{"first device", func() { gens["p1"] = s.Connected("u", "u/phone") }, []localCall{{"u", 1}}, map[string]int{"u": 1}},
		{"second device", func() { gens["l"] = s.Connected("u", "u/laptop") }, []localCall{{"u", 2}}, map[string]int{"u": 2}},
		{"takeover: the same client id reconnects", func() { gens["p2"] = s.Connected("u", "u/phone") }, nil, map[string]int{"u": 2}},
		{"the taken-over connection ends", func() { s.Disconnected("u", "u/phone", gens["p1"], CauseTakeover) }, nil, map[string]int{"u": 2}},
		{"a stale generation ends late", func() { s.Disconnected("u", "u/phone", gens["p1"], CauseWill) }, nil, map[string]int{"u": 2}},
		{"remote devices are not local", func() { s.SetRemote("n2", "u", 3); s.SetRemote("n2", "w", 1) }, nil, map[string]int{"u": 2}},
		{"moved away", func() { s.Disconnected("u", "u/laptop", gens["l"], CauseMoved) }, []localCall{{"u", 1}}, map[string]int{"u": 1}},
		{"another user", func() { gens["v"] = s.Connected("v", "v/x") }, []localCall{{"v", 1}}, map[string]int{"u": 1, "v": 1}},
		{"a dropped node is not local", func() { s.DropNode("n2") }, nil, map[string]int{"u": 1, "v": 1}},
		{"last local device", func() { s.Disconnected("u", "u/phone", gens["p2"], CauseDisconnect) }, []localCall{{"u", 0}}, map[string]int{"v": 1}},
		{"grace runs out", func() { clk.advance(grace) }, nil, map[string]int{"v": 1}},
		{"takeover with the late end first", func() {
			s.Disconnected("v", "v/x", gens["v"], CauseTakeover)
			s.Connected("v", "v/x")
		}, nil, map[string]int{"v": 1}},
	}
	for _, st := range steps {
		st.do()
		if got := obs.take(); fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Fatalf("%s: observed %v, want %v", st.name, got, st.want)
		}
		if got := s.LocalSnapshot(); fmt.Sprint(got) != fmt.Sprint(st.snapshot) {
			t.Fatalf("%s: LocalSnapshot = %v, want %v", st.name, got, st.snapshot)
		}
	}
}

// TestLocalObserverOrder connects and disconnects devices of one user from
// many goroutines: the observer must see a walk of ±1 steps ending at 0,
// which it would not if calls could overtake each other.
func TestLocalObserverOrder(t *testing.T) {
	s, _, obs := setupLocal(t)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			id := fmt.Sprintf("u/%d", w)
			for range rounds {
				g := s.Connected("u", id)
				s.Disconnected("u", id, g, CauseDisconnect)
			}
		})
	}
	wg.Wait()
	calls := obs.take()
	if len(calls) != 2*workers*rounds {
		t.Fatalf("%d calls, want %d", len(calls), 2*workers*rounds)
	}
	prev := 0
	for i, c := range calls {
		if c.uid != "u" || c.devices < 0 || c.devices > workers || (c.devices-prev != 1 && prev-c.devices != 1) {
			t.Fatalf("call %d: %+v after %d", i, c, prev)
		}
		prev = c.devices
	}
	if prev != 0 {
		t.Fatalf("last count %d, want 0", prev)
	}
}

// TestRestoreThenRemote: a retained online aggregate restored at startup
// is confirmed by a remote device within its grace period.
func TestRestoreThenRemote(t *testing.T) {
	s, clk, rec, _ := setup(t)
	s.Restore("u", []byte(`{"status":"online","devices":2}`))
	s.SetRemote("n2", "u", 1)
	expect(t, rec.take(), online(1))
	clk.advance(2 * grace)
	expect(t, rec.take())
	if v := s.View("u"); v != online(1) {
		t.Fatalf("View = %+v", v)
	}
}
