package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqchat/mqchat/internal/config"
)

// Bounds on what one more idle, subscribed chat connection may add to the
// process, this test's client end included. They measured 20.3 KB of heap
// (23 KB before the read buffer went to a pool; the outbound channel of
// 1000 slots is 8 KiB of it) and 20 KiB of stacks (mochi's reader goroutine
// at 16 KiB and its writer at 4 KiB: their frames leave no smaller size).
// The margins absorb a loaded machine and still fail the read buffer
// coming back, a per-connection goroutine or buffer added by mistake, or
// mochi's 64 KiB default outbound channel.
const (
	idleHeapBound  = 22 << 10
	idleStackBound = 24 << 10 // doubled under the race detector
)

// Memory per idle connection is a guarded figure (docs/benchmarks.md): N
// real devices connect and subscribe to their inbox as chat clients do,
// and the growth of the heap and the goroutine stacks after a collection
// is divided by N. The last measurement was taken after connections that
// were already open, so one-time costs (pools, maps growing) stay out.
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 550 connections")
	}
	if os.Getenv(idleMemoryChild) == "" {
		measureInOwnProcess(t)
		return
	}
	s := startServer(t, func(c *config.Config) { c.Limits.MaxConnectionsPerUser = 1000 })
	const users, warm, n = 10, 50, 500
	accs := make([]account, users)
	for i := range accs {
		accs[i] = s.register(t, fmt.Sprintf("idle%d", i))
	}
	var conns []*rawV5
	t.Cleanup(func() {
		for _, r := range conns {
			_ = r.conn.Close()
		}
	})
	open := func(k int) {
		t.Helper()
		for range k {
			i := len(conns)
			a := accs[i%users]
			r, _ := rawConnectV5(t, s, a, fmt.Sprintf("d%d", i), true)
			conns = append(conns, r)
			if rc := r.subscribe(1, "users/"+a.ID+"/inbox"); rc >= 0x80 {
				t.Fatalf("subscribe %d: reason 0x%02x", i, rc)
			}
		}
	}

	open(warm)
	before := settledMemory(t)
	open(n)
	after := settledMemory(t)

	// Every connection must still be there to have been counted.
	for i, r := range conns {
		r.write(packets.NewControlPacket(packets.PINGREQ))
		r.read(fmt.Sprintf("PINGRESP on connection %d", i), func(p *packets.ControlPacket) bool { return p.Type == packets.PINGRESP })
	}

	heap := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / n
	stack := float64(int64(after.StackInuse)-int64(before.StackInuse)) / n
	stackBound := idleStackBound
	if raceDetector {
		stackBound *= 2
	}
	t.Logf("per idle connection: %.0f B heap (bound %d) + %.0f B stack (bound %d)", heap, idleHeapBound, stack, stackBound)
	if heap > idleHeapBound {
		t.Errorf("an idle connection costs %.0f B of heap, over the bound of %d B", heap, idleHeapBound)
	}
	if stack > float64(stackBound) {
		t.Errorf("an idle connection costs %.0f B of goroutine stacks, over the bound of %d B", stack, stackBound)
	}
}

// idleMemoryChild marks the test binary run that measures.
const idleMemoryChild = "MQCHAT_IDLE_MEMORY_CHILD"

// measureInOwnProcess runs the measurement in a fresh run of the test
// binary: the heap of a server an earlier test stopped can still be live
// when the measurement starts and be freed in the middle of it.
func measureInOwnProcess(t *testing.T) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionMemory$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), idleMemoryChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("measurement: %v\n%s", err, out)
	}
	var found bool
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "per idle connection") {
			t.Log(strings.TrimSpace(line))
			found = true
		}
	}
	if !found {
		t.Fatalf("the measurement reported no figures:\n%s", out)
	}
}

// settledMemory collects garbage once the goroutine count holds still (the
// outbound queues' drain goroutines have exited), and reads the memory
// statistics.
func settledMemory(t *testing.T) runtime.MemStats {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	prev := -1
	for g := runtime.NumGoroutine(); g != prev; g = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutine count never settled (%d)", g)
		}
		prev = g
		runtime.Gosched()
		time.Sleep(20 * time.Millisecond) // polling interval of the condition above
	}
	// Twice: the first collection only moves sync.Pool contents to the
	// pools' victim caches, which the second frees. (The collections also
	// halve stacks grown past their floor, so the stacks measured are the
	// floor an idle connection settles at.)
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
