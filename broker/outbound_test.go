package broker

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// net.Pipe has no buffer at all, so a peer that does not read is a socket
// whose buffers are full: every write to it blocks.

type cutOffs chan string

func (c cutOffs) record(_ *outConn, reason string) { c <- reason }

func newPipeConn(t *testing.T, lim OutboundLimits) (*outConn, net.Conn, cutOffs, *atomic.Int64) {
	t.Helper()
	server, peer := net.Pipe()
	t.Cleanup(func() { _ = peer.Close(); _ = server.Close() })
	cuts := make(cutOffs, 4)
	total := new(atomic.Int64)
	return newOutConn(server, lim, cuts.record, total), peer, cuts, total
}

func TestOutConnWritesNeverWaitForThePeer(t *testing.T) {
	c, _, _, total := newPipeConn(t, OutboundLimits{MaxBytes: 1 << 20, StallTimeout: time.Minute})
	chunk := bytes.Repeat([]byte("m"), 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 64 { // 4 MiB to a peer that reads nothing
			if _, err := c.Write(chunk); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write blocked on a peer that does not read")
	}
	if got := total.Load(); got != 64*int64(len(chunk)) {
		t.Fatalf("queued %d bytes, want %d", got, 64*len(chunk))
	}
}

func TestOutConnCutOffs(t *testing.T) {
	tests := []struct {
		name string
		// stall makes the connection stall its way; it returns when the
		// cut-off should have been triggered.
		stall func(c *outConn)
	}{
		{"socket takes no bytes", func(c *outConn) {
			_, _ = c.Write([]byte("nobody reads this"))
		}},
		{"queue stays full", func(c *outConn) {
			_, _ = c.Write(bytes.Repeat([]byte("x"), 64))
			c.waitRoom() // the connection's own writer gives up
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer, cuts, total := newPipeConn(t, OutboundLimits{MaxBytes: 16, StallTimeout: 50 * time.Millisecond})
			tt.stall(c)
			select {
			case reason := <-cuts:
				if reason != CutOffStalled {
					t.Fatalf("reason %q", reason)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no cut-off")
			}
			if _, err := peer.Read(make([]byte, 1)); err == nil {
				t.Fatal("the socket is still open after the cut-off")
			}
			if _, err := c.Write([]byte("late")); err == nil {
				t.Fatal("write after the cut-off succeeded")
			}
			waitFor(t, "queued bytes given back", func() bool { return total.Load() == 0 })
			select {
			case r := <-cuts:
				t.Fatalf("reported twice (%q)", r)
			default:
			}
		})
	}
}

func TestOutConnWaitRoomReturnsWhenThePeerReads(t *testing.T) {
	c, peer, cuts, _ := newPipeConn(t, OutboundLimits{MaxBytes: 16, StallTimeout: time.Minute})
	payload := bytes.Repeat([]byte("p"), 32)
	_, _ = c.Write(payload)
	waited := make(chan struct{})
	go func() { c.waitRoom(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("waitRoom returned while the queue was full")
	case <-time.After(50 * time.Millisecond):
	}
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("peer read %q, %v", got, err)
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("waitRoom still waiting after the queue drained")
	}
	if len(cuts) != 0 {
		t.Fatal("a reading peer was cut off")
	}
}

// A refusing CONNACK or a DISCONNECT is written just before mochi closes the
// connection; it must still arrive.
func TestOutConnCloseWritesWhatWasQueued(t *testing.T) {
	c, peer, _, _ := newPipeConn(t, OutboundLimits{MaxBytes: 1 << 10, StallTimeout: time.Minute})
	_, _ = c.Write([]byte("goodbye"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if string(got) != "goodbye" {
		t.Fatalf("peer read %q (%v)", got, err)
	}
}

// A peer that never reads does not hold Close up beyond the linger.
func TestOutConnCloseDoesNotWaitForAStalledPeer(t *testing.T) {
	c, peer, _, _ := newPipeConn(t, OutboundLimits{MaxBytes: 1 << 10, StallTimeout: time.Minute})
	_, _ = c.Write([]byte("never read"))
	start := time.Now()
	_ = c.Close()
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("Close took %v", took)
	}
	waitFor(t, "socket closed after the linger", func() bool {
		_ = peer.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := peer.Read(make([]byte, 64))
		return err != nil && !isTimeout(err)
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
