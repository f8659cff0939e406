package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	pebbledb "github.com/cockroachdb/pebble"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/origin"
	"github.com/mqchat/mqchat/internal/pebblelog"
)

// Listener ids, as they appear in mochi's logs and in Client.Net.Listener.
const (
	listenerTCP = "tcp"
	listenerTLS = "tls"
	listenerWS  = "ws"
)

// Addrs are the bound host:port of each listener; "" when it is off.
type Addrs struct {
	TCP, TLS, WS string
}

// Broker is the embedded MQTT server and its listeners.
type Broker struct {
	srv *mqtt.Server
	log *slog.Logger
	tcp listeners.Listener
	tls listeners.Listener // nil when off
	ws  listeners.Listener // nil when off

	queued *atomic.Int64 // bytes waiting in every connection's outbound queue
	// gate serialises mochi's retained writes against its wildcard scans
	// (retaingate.go); sys publishes $SYS through it in mochi's place.
	gate       *retainGate
	sys        *sysTopics
	sysRunning bool
	sessions   *sessionStore // nil without a session directory
	takeovers  *takeovers

	mu      sync.Mutex
	started bool
	closed  bool
}

// New builds the broker and binds its listeners, but does not accept
// clients until Start. Hooks are added in order after the session store,
// each initialised with a nil config, so they must be configured before
// being passed in.
func New(opts Options, hooks ...mqtt.Hook) (*Broker, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	caps, err := opts.capabilities()
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	origins := opts.Origins
	if origins == nil {
		sameHost, err := origin.New(nil)
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		origins = sameHost
	}
	var tlsListener listeners.Listener
	if opts.TLSAddr != "" {
		cfg := opts.TLSConfig
		if cfg == nil {
			if cfg, err = loadTLSConfig(opts.TLSCert, opts.TLSKey); err != nil {
				return nil, fmt.Errorf("broker: %w", err)
			}
		}
		tlsListener = guard(listeners.NewTCP(listeners.Config{ID: listenerTLS, Address: opts.TLSAddr, TLSConfig: cfg}))
	}

	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = newMochiLogs(log)

	b := &Broker{
		srv: mqtt.New(&mqtt.Options{
			Capabilities: caps,
			Logger:       log,
			// The read buffer that matters is the pooled one under it
			// (readbuf.go), so idle connections do not keep one each.
			ClientNetReadBufferSize: readBufferSize,
			InlineClient:            true, // the chat services publish through the broker
			// sysTopics publishes $SYS instead, through the retain gate.
			SysTopicResendInterval: parkedSysInterval,
		}),
		log:    log,
		queued: new(atomic.Int64),
		tcp:    guard(listeners.NewTCP(listeners.Config{ID: listenerTCP, Address: opts.TCPAddr})),
		tls:    tlsListener,
	}
	if opts.WSAddr != "" {
		path := opts.WSPath
		if path == "" {
			path = defaultWSPath
		}
		b.ws = guard(newWSListener(listenerWS, opts.WSAddr, path, origins, opts.WSTLSConfig, opts.MaxPacketSize))
	}

	b.gate = newRetainGate(b.srv, log)
	b.takeovers = newTakeovers(b.srv, log)

	outbound := opts.outboundLimits()
	cutOff := b.cutOffLogger(opts.OutboundMetrics)
	for _, l := range []listeners.Listener{b.tcp, b.tls, b.ws} {
		if g, ok := l.(*guardedListener); ok {
			g.disconnect = disconnectClients(b.srv)
			g.outbound = outbound
			g.cutOff = cutOff
			g.queued = b.queued
		}
	}

	outGate := &outboundGate{metrics: opts.OutboundMetrics}
	limits := restoreLimits{
		maxSubs: opts.MaxSubscriptions, maxFilterBytes: opts.MaxFilterBytes,
		keepFirst: opts.KeepFirst, observer: opts.Limits, log: log.With("component", "sessions"),
	}
	if err := b.setup(opts.SessionDir, limits, append([]mqtt.Hook{outGate}, hooks...)); err != nil {
		// Release whatever was opened or bound before the failure.
		_ = b.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return b, nil
}

// setup adds the hooks and then the listeners, so no client can arrive
// before authentication and storage are in place.
func (b *Broker) setup(sessionDir string, limits restoreLimits, hooks []mqtt.Hook) error {
	if sessionDir != "" {
		// First, so that later hooks see clients already restored.
		plog := b.log.With("component", "sessions")
		cfg := &pebble.Options{Path: sessionDir, Mode: pebble.NoSync, Options: &pebbledb.Options{
			Logger: pebblelog.Logger{L: plog}, EventListener: pebblelog.EventListener(plog),
		}}
		store := newSessionStore(limits)
		b.sessions = store
		if err := b.srv.AddHook(store, cfg); err != nil {
			return fmt.Errorf("session store %q: %w", sessionDir, err)
		}
		b.gate.retained = store.OnRetainMessage
		b.sys = newSysTopics(b.srv, b.log, store.OnSysInfoTick)
	} else {
		b.sys = newSysTopics(b.srv, b.log, nil)
	}
	if err := b.srv.AddHook(new(packetIDs), nil); err != nil {
		return fmt.Errorf("packet id hook: %w", err)
	}
	for _, h := range hooks {
		if err := b.srv.AddHook(h, nil); err != nil {
			return fmt.Errorf("hook %s: %w", h.ID(), err)
		}
	}

	ls := []listeners.Listener{b.tcp}
	if b.tls != nil {
		ls = append(ls, b.tls)
	}
	if b.ws != nil {
		ls = append(ls, b.ws)
	}
	for _, l := range ls {
		if err := b.srv.AddListener(l); err != nil {
			return fmt.Errorf("%s listener on %s: %w", l.ID(), l.Address(), err)
		}
	}
	return nil
}

// cutOffLogger reports a client the outbound queue disconnected. It runs on
// the connection's own goroutines or a goroutine of its own.
func (b *Broker) cutOffLogger(m OutboundMetrics) cutOffFunc {
	return func(c *outConn, reason string) {
		id := ""
		if p := c.clientID.Load(); p != nil {
			id = *p
		}
		b.log.Info("client disconnected: not reading what it is sent",
			"client", id, "remote", c.RemoteAddr().String(), "reason", reason)
		if m != nil {
			m.ClientCutOff(reason)
		}
	}
}

// OutboundQueued reports the bytes waiting in every connection's outbound
// queue.
func (b *Broker) OutboundQueued() int64 { return b.queued.Load() }

// Server exposes the mochi server, e.g. for inline publishing.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Start restores stored sessions and starts accepting clients. The
// listeners were bound by New, so Addrs is valid before and after.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return errors.New("broker: start after close")
	case b.started:
		return errors.New("broker: already started")
	}
	b.started = true
	// After the hooks the caller added since New: its OnQosPublish must
	// come after every other hook's (takeover.go).
	if err := b.srv.AddHook(b.takeovers, nil); err != nil {
		return fmt.Errorf("broker: takeover hook: %w", err)
	}
	// Last, after the hooks the caller added since New: the gate's
	// OnPublish must see only publishes every other hook let through.
	if err := b.srv.AddHook(b.gate, nil); err != nil {
		return fmt.Errorf("broker: retain gate: %w", err)
	}
	// Serve restores retained messages and publishes $SYS once by itself,
	// while its listeners already accept clients. (So no OnStarted hook,
	// which Serve calls last, may publish a retained message.)
	var err error
	b.gate.exclusive(func() { err = b.srv.Serve() })
	if err != nil {
		return fmt.Errorf("broker: start: %w", err)
	}
	go b.sys.run(sysInterval)
	b.sysRunning = true
	return nil
}

// RetainedMessages returns the retained messages matching filter, read as
// a wildcard SUBSCRIBE reads them but safe against concurrent retained
// writes (use it instead of Server().Topics.Messages).
func (b *Broker) RetainedMessages(filter string) []packets.Packet {
	var out []packets.Packet
	b.gate.shared(func() { out = b.srv.Topics.Messages(filter) })
	return out
}

// Addrs returns the bound listener addresses.
func (b *Broker) Addrs() Addrs {
	a := Addrs{TCP: b.tcp.Address()}
	if b.tls != nil {
		a.TLS = b.tls.Address()
	}
	if b.ws != nil {
		a.WS = b.ws.Address()
	}
	return a
}

// Close disconnects clients, closes the listeners and stops the hooks,
// which flushes the session store. It is safe to call more than once;
// mochi's own Close panics on a second call.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.sysRunning {
		b.sys.close()
	}
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// DropSession ends cl's session for good, connected or not: the client
// id connected to another node, which now holds the device. Its
// subscriptions and queued messages go, here and in the session store.
func (b *Broker) DropSession(cl *mqtt.Client, code packets.Code) {
	if !cl.Closed() {
		_ = b.srv.DisconnectClient(cl, code)
	}
	b.srv.UnsubscribeClient(cl)
	cl.ClearInflights()
	if cur, ok := b.srv.Clients.Get(cl.ID); ok && cur == cl {
		b.srv.Clients.Delete(cl.ID)
	}
	if b.sessions != nil {
		b.sessions.write(func() { b.sessions.Hook.OnClientExpired(cl) })
	}
}

// DisconnectAll closes every client connection with code (a node that
// lost its cluster membership sends its clients elsewhere). Sessions stay.
func (b *Broker) DisconnectAll(code packets.Code) int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || cl.Closed() {
			continue
		}
		_ = b.srv.DisconnectClient(cl, code)
		n++
	}
	return n
}

// disconnectClients is what Server.Close runs for each listener. mochi's own
// closer reads its client map through Clients.GetByListener, which takes the
// map's read lock twice; a client leaving at the same moment queues for the
// write lock in between and the two deadlock, hanging shutdown. GetAll takes
// the lock once.
func disconnectClients(srv *mqtt.Server) listeners.CloseFn {
	return func(listenerID string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == listenerID && !cl.Closed() {
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	}
}
