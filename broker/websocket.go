package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

const (
	// defaultWSReadLimit caps a single WebSocket message when no MQTT
	// packet size limit is configured, so one client cannot make us
	// buffer an unbounded frame.
	defaultWSReadLimit = 1 << 20

	wsHandshakeTimeout = 10 * time.Second
	wsShutdownTimeout  = 5 * time.Second
)

// wsListener is a mochi listener for MQTT over WebSocket. It replaces
// mochi's own, which upgrades any path from any Origin with or without the
// mqtt subprotocol.
type wsListener struct {
	id        string
	addr      string
	path      string
	origins   OriginChecker
	tls       *tls.Config // nil: plain ws://
	readLimit int64

	log       *slog.Logger
	ln        net.Listener
	srv       *http.Server
	upgrader  websocket.Upgrader
	establish listeners.EstablishFn // set by Serve before the server accepts

	closeOnce sync.Once
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id, addr, path string, origins OriginChecker, tlsConfig *tls.Config, maxPacketSize uint32) *wsListener {
	limit := int64(defaultWSReadLimit)
	if maxPacketSize > 0 {
		limit = int64(maxPacketSize)
	}
	return &wsListener{
		id:        id,
		addr:      addr,
		path:      path,
		origins:   origins,
		tls:       tlsConfig,
		readLimit: limit,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: wsHandshakeTimeout,
			Subprotocols:     []string{"mqtt"},
			// The Origin has already been checked in ServeHTTP, where the
			// refusal can be logged; gorilla's default would second-guess
			// the allowlist with a same-host rule.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Protocol() string { return "ws" }

// Address returns the bound address once Init has run, so ":0" resolves to
// the real port.
func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Init binds the socket so that bind errors surface from New and the port
// is known before Serve.
func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tls != nil {
		// Without "h2" in NextProtos the handshake settles on HTTP/1.1,
		// the only version a WebSocket upgrade works over.
		ln = tls.NewListener(ln, l.tls)
	}
	l.ln = ln
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return nil
}

// Serve blocks serving HTTP until Close.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	err := l.srv.Serve(l.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "error", err)
	}
}

// Close stops accepting before disconnecting clients so none can slip in
// between. Upgraded connections are hijacked, so Shutdown does not wait on
// them; closeClients does that.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wsShutdownTimeout)
		defer cancel()
		if err := l.srv.Shutdown(ctx); err != nil {
			l.log.Warn("websocket listener shutdown", "error", err)
		}
		// Shutdown only closes listeners that Serve has seen; Close may
		// come before Serve (e.g. New failing part way).
		_ = l.ln.Close()
	})
	closeClients(l.id)
}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != l.path {
		http.NotFound(w, r)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), "mqtt") {
		l.log.Debug("websocket refused: no mqtt subprotocol", "remote", r.RemoteAddr)
		http.Error(w, "websocket subprotocol \"mqtt\" required", http.StatusBadRequest)
		return
	}
	if ok, reason := l.origins.Check(r); !ok {
		// Info: a browser page being refused is an operator's question
		// (a missing http.allowed_origins entry), not a client bug.
		l.log.Info("websocket refused: origin not allowed", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "host", r.Host, "reason", reason)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}

	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// Upgrade has already written the HTTP error response.
		l.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	ws.SetReadLimit(l.readLimit)
	conn := newWSConn(ws)
	defer conn.Close()
	// establish runs the client to completion; guardedListener logs how it
	// ended.
	_ = l.establish(l.id, conn)
}
