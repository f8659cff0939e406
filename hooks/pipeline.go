package hooks

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A client's chat sends are pipelined, whatever its protocol version: the
// read loop queues each send on the chat pipeline and goes on reading, so
// the sends a client keeps in flight share group commits instead of paying
// one fsync per round trip. What stays strict:
//
//   - PUBACKs leave in the order the PUBLISHes arrived ([MQTT-4.6.0-2]):
//     one goroutine per connection, started per burst, waits for each
//     send's commit in turn and writes its PUBACK. A later send whose chat
//     committed first waits for the earlier one.
//   - At most window sends of a connection wait for their commit. Past it
//     the read loop stops reading the socket until the oldest is answered,
//     so a 3.1.1 client, which is never told a receive maximum, is slowed
//     by TCP instead of disconnected; a v5 client that respects the
//     receive maximum in its CONNACK never reaches it.
//   - A PUBACK still means the message is durable: it is written only
//     after the send's commit returned.

// pendingSend is a queued send waiting for its outcome, or a publish
// answered at once whose PUBACK waits behind earlier sends (Chat.inOrder).
type pendingSend struct {
	id  uint16 // 0: a QoS 0 send, which gets no PUBACK
	rc  func() packets.Code
	end func() // releases what the send held (its timeout); may be nil
}

// sendQueue is one connection's sends in arrival order.
type sendQueue struct {
	mu      sync.Mutex
	q       []pendingSend
	head    int  // q[head:] are waiting
	running bool // a drain goroutine is answering q
	room    chan struct{}
}

// pipelines holds the send queue of every connection that has sent; a
// queue releases its slice when it empties, so a connection that is not
// sending holds only the empty queue, until it disconnects.
type pipelines struct {
	window int
	m      sync.Map // *mqtt.Client → *sendQueue
}

// push queues s for cl and returns once fewer than window sends of cl
// wait, so the caller (cl's read loop) reads the next packet only then.
func (p *pipelines) push(cl *mqtt.Client, s pendingSend) {
	v, ok := p.m.Load(cl)
	if !ok {
		v, _ = p.m.LoadOrStore(cl, new(sendQueue))
	}
	sq := v.(*sendQueue)
	sq.mu.Lock()
	sq.q = append(sq.q, s)
	if !sq.running {
		sq.running = true
		go p.drain(cl, sq)
	}
	for len(sq.q)-sq.head >= p.window {
		if sq.room == nil {
			sq.room = make(chan struct{})
		}
		room := sq.room
		sq.mu.Unlock()
		<-room // the drain answers every queued send, connection or not
		sq.mu.Lock()
	}
	sq.mu.Unlock()
}

// drain answers cl's queued sends in order until none is left.
func (p *pipelines) drain(cl *mqtt.Client, sq *sendQueue) {
	for {
		sq.mu.Lock()
		if sq.head == len(sq.q) {
			// Released rather than kept: most connections send in short
			// bursts, and an idle one should hold nothing.
			sq.q, sq.head, sq.running = nil, 0, false
			sq.mu.Unlock()
			return
		}
		s := sq.q[sq.head]
		sq.mu.Unlock()

		rc := s.rc()
		if s.end != nil {
			s.end()
		}
		if s.id != 0 {
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: s.id, ReasonCode: rc.Code}
			if rc.Code >= packets.ErrUnspecifiedError.Code {
				ack.Properties.ReasonString = rc.Reason
			}
			// A closed connection loses only the PUBACK: the message is
			// stored, and the client's retry with the same cmid is deduped.
			_ = cl.WritePacket(ack)
			cl.State.Inflight.IncreaseReceiveQuota()
		}

		sq.mu.Lock()
		sq.q[sq.head] = pendingSend{}
		sq.head++
		if sq.head > 64 && 2*sq.head > len(sq.q) {
			// A client that never pauses never empties the queue: move the
			// waiting sends down so the answered ones do not pile up.
			n := copy(sq.q, sq.q[sq.head:])
			clear(sq.q[n:])
			sq.q, sq.head = sq.q[:n], 0
		}
		if sq.room != nil {
			close(sq.room)
			sq.room = nil
		}
		sq.mu.Unlock()
	}
}

// busy reports whether cl has sends waiting to be answered.
func (p *pipelines) busy(cl *mqtt.Client) bool {
	v, ok := p.m.Load(cl)
	if !ok {
		return false
	}
	sq := v.(*sendQueue)
	sq.mu.Lock()
	defer sq.mu.Unlock()
	return sq.head < len(sq.q)
}

// forget drops cl's queue; a drain still running keeps its own reference
// and finishes answering.
func (p *pipelines) forget(cl *mqtt.Client) { p.m.Delete(cl) }
