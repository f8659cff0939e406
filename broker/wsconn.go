package broker

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// errNotBinary is returned for text frames: MQTT over WebSocket is binary
// only, and a client sending text is broken or not speaking MQTT.
var errNotBinary = errors.New("websocket: non-binary message")

// wsConn presents a WebSocket as the byte stream mochi expects. MQTT packets
// and WebSocket messages are independent: a packet may span messages and a
// message may carry several packets, so reads stream across message
// boundaries.
type wsConn struct {
	net.Conn // the hijacked connection, for addresses and Close
	ws       *websocket.Conn
	r        io.Reader // current message; only touched by the single reader

	wmu sync.Mutex // gorilla allows one concurrent writer
	// writeDeadline is applied by Write: gorilla's own SetWriteDeadline
	// must only be called by the writer, but mochi sets deadlines from its
	// read loop.
	writeDeadline atomic.Pointer[time.Time]
}

func newWSConn(ws *websocket.Conn) *wsConn {
	return &wsConn{Conn: ws.NetConn(), ws: ws}
}

// Read returns as soon as some bytes are available rather than filling p,
// so a short message never blocks waiting for the next one.
func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err != nil {
			// Any error ends this message: EOF is its normal end and the
			// next Read moves on; anything else ends the connection.
			c.r = nil
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var deadline time.Time
	if d := c.writeDeadline.Load(); d != nil {
		deadline = *d
	}
	// gorilla re-applies its stored deadline to the socket on every write,
	// so it has to be told rather than the socket.
	if err := c.ws.SetWriteDeadline(deadline); err != nil {
		return 0, err
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the connection without a close handshake: the peer is
// either gone or being dropped, and waiting on it would stall shutdown.
func (c *wsConn) Close() error {
	return c.ws.Close()
}

func (c *wsConn) SetDeadline(t time.Time) error {
	c.writeDeadline.Store(&t)
	return c.ws.SetReadDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error {
	return c.ws.SetReadDeadline(t)
}

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(&t)
	return nil
}
