package broker

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochi v2.7.9 writes to a client's socket while holding that client's
// lock (Client.WritePacket), and every publish to the client needs the same
// lock first (Client.NextPacketID). A client that stops reading therefore
// blocked whoever published to it next: the chat writers' fan-out,
// presence, receipts, shutdown. outConn takes the socket out of that lock:
// mochi's writes land in a bounded per-connection queue and return at once,
// and a goroutine of the connection's own moves the queue to the socket.
// The queue is bounded twice: in packets by mochi's outbound channel
// (mqtt.client_writes_pending) and in bytes here; the gate hook makes the
// connection's own writer wait for room before encoding the next packet,
// so only that connection's goroutines ever wait on its socket.

// Cut-off reasons, as reported to OutboundMetrics.
const (
	// CutOffStalled: the queue stayed full, or the socket took no bytes,
	// for the stall timeout.
	CutOffStalled = "stalled"
	// CutOffOverflow: mochi had to drop a packet for the connection because
	// its packet queue was full. The client is disconnected at once so it
	// never goes on with a silent gap; what it missed is in the store.
	CutOffOverflow = "overflow"
)

// closeLinger bounds how long a closing connection may take to write out
// what was queued before it (a refusing CONNACK, a DISCONNECT with its
// reason code).
const closeLinger = time.Second

// Write buffers live in a pool between bursts rather than with their
// connection: an idle connection then holds none, and a burst starts from
// a buffer an earlier burst (of any connection) already grew, instead of
// growing a new one from nothing. Buffers past maxPooledBuffer, grown by a
// rare large burst, are left to the collector.
const maxPooledBuffer = 64 << 10

var writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func takeWriteBuffer() []byte { return (*writeBuffers.Get().(*[]byte))[:0] }

func returnWriteBuffer(b []byte) {
	if b != nil && cap(b) <= maxPooledBuffer {
		b = b[:0]
		writeBuffers.Put(&b)
	}
}

// OutboundLimits bound what the server holds for one connection that reads
// slower than it is written to.
type OutboundLimits struct {
	// MaxBytes is how many encoded bytes may wait for the socket before the
	// connection's writers wait for room. One packet may overshoot it.
	MaxBytes int
	// StallTimeout is how long the queue may stay full, or one socket
	// write take, before the client is disconnected.
	StallTimeout time.Duration
}

// DefaultOutboundLimits are used where Options leave the limits at zero.
var DefaultOutboundLimits = OutboundLimits{MaxBytes: 1 << 20, StallTimeout: 10 * time.Second}

// OutboundMetrics observes the outbound queues. Implementations must not
// block: they are called on broker goroutines.
type OutboundMetrics interface {
	ClientCutOff(reason string)
	PublishDropped()
}

// cutOffFunc reports a connection the queue closed; it runs at most once
// per connection.
type cutOffFunc func(c *outConn, reason string)

// outConn is a net.Conn whose writes never block on the peer.
type outConn struct {
	net.Conn // addresses and the final close go straight to the socket
	in       lazyReader
	lim      OutboundLimits
	onCutOff cutOffFunc
	total    *atomic.Int64 // bytes queued on every connection of the broker

	mu      sync.Mutex
	pending []byte // accepted and not yet handed to the socket
	spare   []byte // the other buffer of the pair, reused between writes
	queued  int    // bytes in pending plus the write in progress
	writing bool   // a drain goroutine is running
	closing bool   // Close was called: write out what is queued, then close
	closed  bool   // the socket is closed (or being closed)
	room    chan struct{}
	done    chan struct{} // closed with the socket

	clientID atomic.Pointer[string] // for the cut-off log, once known
}

func newOutConn(c net.Conn, lim OutboundLimits, onCutOff cutOffFunc, total *atomic.Int64) *outConn {
	return &outConn{Conn: c, in: newLazyReader(c), lim: lim, onCutOff: onCutOff, total: total, done: make(chan struct{})}
}

// Read is mochi's read loop's, through a buffer held only while bytes wait
// (readbuf.go).
func (c *outConn) Read(p []byte) (int, error) { return c.in.Read(p) }

// Write queues p and returns at once. mochi writes whole packets (or
// several), so a refused Write never leaves half a packet on the wire.
func (c *outConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closing {
		return 0, net.ErrClosed
	}
	if c.pending == nil {
		c.pending = takeWriteBuffer()
	}
	c.pending = append(c.pending, p...)
	c.queued += len(p)
	c.total.Add(int64(len(p)))
	if !c.writing {
		c.writing = true
		go c.drain()
	}
	return len(p), nil
}

// drain moves queued bytes to the socket until the queue is empty. It is
// started per burst rather than kept per connection, so an idle connection
// costs no goroutine.
func (c *outConn) drain() {
	for {
		c.mu.Lock()
		if c.closed {
			c.writing = false
			c.mu.Unlock()
			return
		}
		if len(c.pending) == 0 {
			c.writing = false
			closing := c.closing
			returnWriteBuffer(c.spare)
			returnWriteBuffer(c.pending)
			c.spare, c.pending = nil, nil
			c.mu.Unlock()
			if closing {
				c.shut()
			}
			return
		}
		buf := c.pending
		c.pending, c.spare = c.spare[:0], nil
		timeout := c.lim.StallTimeout
		if c.closing && closeLinger < timeout {
			timeout = closeLinger
		}
		c.mu.Unlock()

		_ = c.Conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err := c.Conn.Write(buf)

		c.mu.Lock()
		c.queued -= len(buf)
		c.total.Add(-int64(len(buf)))
		c.spare = buf[:0]
		if c.queued < c.lim.MaxBytes {
			c.signalRoomLocked()
		}
		closing := c.closing
		c.mu.Unlock()
		if err != nil {
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			if errors.Is(err, os.ErrDeadlineExceeded) && !closing {
				c.cutOff(CutOffStalled)
			} else {
				c.shut()
			}
			return
		}
	}
}

// waitRoom blocks the calling writer while the queue is at its byte bound.
// It is only ever called on the connection's own goroutines (mochi's write
// loop, its read loop, a send's acknowledgement). A queue that stays full
// for the stall timeout cuts the client off.
func (c *outConn) waitRoom() {
	deadline := time.Now().Add(c.lim.StallTimeout)
	for {
		c.mu.Lock()
		if c.closed || c.closing || c.queued < c.lim.MaxBytes {
			c.mu.Unlock()
			return
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()

		wait := time.Until(deadline)
		if wait <= 0 {
			c.cutOff(CutOffStalled)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-room:
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	}
}

func (c *outConn) signalRoomLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// cutOff closes the socket without writing what is queued: the peer is not
// reading it. Reporting happens once, by whoever closes first.
func (c *outConn) cutOff(reason string) {
	if c.shut() && c.onCutOff != nil {
		c.onCutOff(c, reason)
	}
}

// shut closes the socket once; it reports whether this call did. A TLS
// socket with a write in progress is closed without its close_notify, so
// this does not wait on the peer either.
func (c *outConn) shut() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	// A write in progress gives its bytes back when it fails.
	c.total.Add(-int64(len(c.pending)))
	c.queued -= len(c.pending)
	returnWriteBuffer(c.pending)
	returnWriteBuffer(c.spare)
	c.pending, c.spare = nil, nil
	c.signalRoomLocked()
	close(c.done)
	c.mu.Unlock()
	_ = c.Conn.Close()
	return true
}

// Close lets the queue drain for at most closeLinger, so a DISCONNECT or a
// refusing CONNACK written just before still reaches the client, and then
// closes the socket. It never waits itself.
func (c *outConn) Close() error {
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	writing := c.writing
	c.signalRoomLocked()
	c.mu.Unlock()
	if !writing {
		c.shut()
		return nil
	}
	// A write already blocked under the stall deadline gets the shorter one.
	_ = c.Conn.SetWriteDeadline(time.Now().Add(closeLinger))
	return nil
}

// mochi sets one deadline for its keep-alive; the write deadlines are the
// queue's own.
func (c *outConn) SetDeadline(t time.Time) error      { return c.Conn.SetReadDeadline(t) }
func (c *outConn) SetWriteDeadline(t time.Time) error { return nil }

// outboundGate is the hook half of the queue: it holds each connection's
// writers back while its queue is full, and cuts off a connection mochi had
// to drop a packet for.
type outboundGate struct {
	mqtt.HookBase
	metrics OutboundMetrics
}

func (h *outboundGate) ID() string { return "mqchat-outbound" }

func (h *outboundGate) Provides(b byte) bool {
	return b == mqtt.OnPacketEncode || b == mqtt.OnPublishDropped || b == mqtt.OnSessionEstablished
}

func (h *outboundGate) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if c, ok := cl.Net.Conn.(*outConn); ok {
		id := cl.ID
		c.clientID.Store(&id)
	}
}

// OnPacketEncode runs in Client.WritePacket before mochi takes the client's
// lock, so waiting here holds up only this connection's writer. CONNACK and
// DISCONNECT never wait: they are written by goroutines that are not the
// connection's own (a takeover, shutdown) and are followed by a close.
func (h *outboundGate) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack, packets.Disconnect:
		return pk
	}
	if c, ok := cl.Net.Conn.(*outConn); ok {
		c.waitRoom()
	}
	return pk
}

// OnPublishDropped runs on the publisher's goroutine, which may be shared:
// the cut-off closes a socket that is probably mid-write, so it is handed to
// a goroutine rather than risk a TLS close_notify waiting on the peer.
func (h *outboundGate) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if h.metrics != nil {
		h.metrics.PublishDropped()
	}
	if c, ok := cl.Net.Conn.(*outConn); ok {
		go c.cutOff(CutOffOverflow)
	}
}
