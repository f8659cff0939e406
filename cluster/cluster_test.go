package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/natstest"
)

func startNATS(t *testing.T) string { return natstest.Start(t) }

func testOptions(url, id string) Options {
	return Options{
		Name: "test", NodeID: id, Heartbeat: 200 * time.Millisecond, TTL: time.Second,
		RequestTimeout: time.Second, NATS: NATSOptions{URL: url},
	}
}

func startNode(t *testing.T, url, id string) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := New(ctx, testOptions(url, id))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestMembership(t *testing.T) {
	url := startNATS(t)
	nodes := []*Node{startNode(t, url, "a"), startNode(t, url, "b"), startNode(t, url, "c")}
	for _, n := range nodes {
		waitFor(t, n.id+" sees 3 nodes", 5*time.Second, func() bool { return n.view.size() == 3 })
		if err := n.Check(); err != nil {
			t.Fatalf("%s: Check = %v", n.id, err)
		}
	}
	slots := map[int]bool{}
	for _, n := range nodes {
		slots[n.Slot()] = true
	}
	if len(slots) != 3 {
		t.Fatalf("message-id slots not unique: %v", slots)
	}
	// Every node names the same owner for every chat.
	for i := range 200 {
		chat := fmt.Sprintf("g:%d", i)
		o, _ := nodes[0].Owner(chat)
		for _, n := range nodes[1:] {
			if got, _ := n.Owner(chat); got != o {
				t.Fatalf("owner of %s: %s says %s, a says %s", chat, n.id, got, o)
			}
		}
	}

	// A graceful leave is seen at once.
	nodes[2].Leave(context.Background())
	d := waitFor(t, "c's leave seen", 2*time.Second, func() bool { return nodes[0].view.size() == 2 && nodes[1].view.size() == 2 })
	t.Logf("leave seen after %v", d)

	// A node whose NATS link dies loses its lease before the others drop it.
	var fenced sync.WaitGroup
	fenced.Add(1)
	nodes[1].OnFence(fenced.Done)
	start := time.Now()
	nodes[1].nc.Close()
	fenced.Wait()
	fencedAfter := time.Since(start)
	if nodes[1].Check() == nil {
		t.Fatal("a fenced node still passes Check")
	}
	waitFor(t, "b dropped by a", 3*time.Second, func() bool { return nodes[0].view.size() == 1 })
	droppedAfter := time.Since(start)
	t.Logf("b fenced itself after %v, dropped by a after %v", fencedAfter, droppedAfter)
	if fencedAfter >= droppedAfter {
		t.Fatalf("b fenced itself (%v) only after a dropped it (%v)", fencedAfter, droppedAfter)
	}
}

type recorded struct {
	mu   sync.Mutex
	got  []string
	cond func()
}

func (r *recorded) DeliverLocal(uid, kind, device string, qos byte, payload []byte) {
	if device != "" {
		kind += "/" + device
	}
	r.mu.Lock()
	r.got = append(r.got, fmt.Sprintf("%s %s %d %s", uid, kind, qos, payload))
	r.mu.Unlock()
}

func (r *recorded) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestRelayFollowsHolds(t *testing.T) {
	a, b, ra, rb := twoNodesHoldingU1(t)
	a.Relay("u1", "inbox", 1, []byte("m1"))
	a.Relay("u2", "inbox", 1, []byte("nobody holds u2"))
	a.Relay("u1", "events", 0, []byte("typing"))
	waitFor(t, "b receives u1's deliveries", 2*time.Second, func() bool { return len(rb.list()) == 2 })
	if got := rb.list(); got[0] != "u1 inbox 1 m1" || got[1] != "u1 events 0 typing" {
		t.Fatalf("b got %q", got)
	}
	if err := b.Hold("u1"); err != nil { // a second session of u1
		t.Fatal(err)
	}
	b.Release("u1")
	a.Relay("u1", "inbox", 1, []byte("m2"))
	waitFor(t, "still held by the second session", 2*time.Second, func() bool { return len(rb.list()) == 3 })
	b.Release("u1")
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a.Relay("u1", "inbox", 1, []byte("m3"))
	b.Relay("u1", "inbox", 1, []byte("never echoed"))
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // nothing may arrive: give it the chance
	if got := rb.list(); len(got) != 3 {
		t.Fatalf("b received after its last release: %q", got)
	}
	if got := ra.list(); len(got) != 0 {
		t.Fatalf("a received what it did not hold: %q", got)
	}
}

// TestRelayDevice: a device message reaches the node holding its user with
// the device named, at QoS 1.
func TestRelayDevice(t *testing.T) {
	a, _, ra, rb := twoNodesHoldingU1(t)
	a.RelayDevice("u1", "phone", []byte(`{"seq":1}`))
	waitFor(t, "b receives the device message", 2*time.Second, func() bool { return len(rb.list()) == 1 })
	if got := rb.list(); got[0] != `u1 device/phone 1 {"seq":1}` {
		t.Fatalf("b got %q", got)
	}
	if got := ra.list(); len(got) != 0 {
		t.Fatalf("a received its own relay: %q", got)
	}
}

// twoNodesHoldingU1 starts nodes a and b recording what is relayed to them,
// b holding a session of user u1.
func twoNodesHoldingU1(t *testing.T) (a, b *Node, ra, rb *recorded) {
	t.Helper()
	url := startNATS(t)
	a, b = startNode(t, url, "a"), startNode(t, url, "b")
	ra, rb = &recorded{}, &recorded{}
	a.Serve(Handlers{Local: ra})
	b.Serve(Handlers{Local: rb})
	if err := b.Hold("u1"); err != nil {
		t.Fatal(err)
	}
	return a, b, ra, rb
}
