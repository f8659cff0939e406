package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// connectTimeout bounds the wait for CONNECT on a new connection. mochi
// sets no deadline until CONNECT has been read, so a silent connection
// would hold its goroutines forever. mochi replaces the deadline with the
// keepalive one once the client is connected.
const connectTimeout = 10 * time.Second

var errListenerClosed = errors.New("listener closed")

// guardedListener wraps a mochi listener to fix two things mochi leaves
// open for connections that have not completed CONNECT: they have no
// deadline, and Server.Close neither disconnects them (it only knows
// registered clients) nor synchronises with them, so it can hang in
// ClientsWg.Wait and races with their ClientsWg.Add. Close therefore
// closes every connection this listener handed to mochi and waits for all
// of them to return before mochi's Wait runs.
type guardedListener struct {
	listeners.Listener
	log            *slog.Logger
	connectTimeout time.Duration

	// disconnect replaces mochi's own closer (see disconnectClients); nil
	// keeps the closer mochi passes.
	disconnect listeners.CloseFn

	// outbound bounds every connection's queue (see outConn); cutOff
	// reports a connection the queue closed.
	outbound OutboundLimits
	cutOff   cutOffFunc
	queued   *atomic.Int64 // shared by the broker's listeners

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
	active  sync.WaitGroup
}

func guard(l listeners.Listener) *guardedListener {
	return &guardedListener{
		Listener:       l,
		connectTimeout: connectTimeout,
		outbound:       DefaultOutboundLimits,
		queued:         new(atomic.Int64),
		conns:          make(map[net.Conn]struct{}),
	}
}

func (g *guardedListener) Init(log *slog.Logger) error {
	g.log = log
	return g.Listener.Init(log)
}

func (g *guardedListener) Serve(establish listeners.EstablishFn) {
	g.Listener.Serve(func(id string, raw net.Conn) error {
		c := newOutConn(raw, g.outbound, g.cutOff, g.queued)
		if !g.track(c) {
			_ = raw.Close()
			return errListenerClosed
		}
		defer g.untrack(c)
		// mochi closes the connection it stops; this covers the paths where
		// establish returns without, so the socket never outlives it.
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(g.connectTimeout))
		// Disconnects and bad CONNECTs are routine, and mochi's TCP
		// listener would log them as warnings with an empty message.
		if err := establish(id, c); err != nil {
			g.log.Debug("client connection ended", "remote", c.RemoteAddr().String(), "error", err)
		}
		return nil
	})
}

// Close lets the wrapped listener stop accepting and disconnect its
// registered clients, then drops whatever is left.
func (g *guardedListener) Close(closeClients listeners.CloseFn) {
	if g.disconnect != nil {
		closeClients = g.disconnect
	}
	g.Listener.Close(closeClients)

	g.mu.Lock()
	g.closing = true
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()

	g.active.Wait()
}

func (g *guardedListener) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.conns[c] = struct{}{}
	g.active.Add(1)
	return true
}

func (g *guardedListener) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	g.active.Done()
}
