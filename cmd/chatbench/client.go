package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// dialer spreads connections over several 127.0.0.x source addresses: each
// (source, destination) pair has its own ~28k ephemeral ports.
type dialer struct {
	sources []net.IP
	next    atomic.Uint64
	// rcvBuf, when set, is the SO_RCVBUF of every socket, applied before
	// connecting (the window scale is agreed in the handshake): a stalled
	// consumer with a tiny buffer makes the server's writes block early.
	rcvBuf int
}

func newDialer(n int) *dialer { return newDialerFrom(1, n) }

// newDialerFrom uses 127.0.0.first onwards, so attackers' connections
// leave the healthy clients' ports alone.
func newDialerFrom(first, n int) *dialer {
	d := &dialer{}
	for i := first; i < first+max(n, 1) && i <= 254; i++ {
		d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(i)))
	}
	return d
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: bind the source
// address now but choose the port at connect, per destination. Without it a
// bind to port 0 needs a port unused towards every destination, and a
// handful of earlier runs' TIME_WAIT sockets exhaust the range.
const ipBindAddressNoPort = 24

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	src := d.sources[d.next.Add(1)%uint64(len(d.sources))]
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
				if serr == nil && d.rcvBuf > 0 {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, d.rcvBuf)
				}
			}); err != nil {
				return err
			}
			return serr
		}}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, src, err)
	}
	return conn, nil
}

// identity is how one client logs in and what it subscribes to.
type identity struct {
	ClientID string
	Username string // "" = anonymous
	Password string
	Subs     []string // QoS 1
	// Addr is the MQTT target this client connects to when there are
	// several; "" = the one the scenario was given.
	Addr string
	// V3 speaks MQTT 3.1.1 (paho.mqtt.golang) instead of MQTT 5.
	V3 bool
}

// client is a paho client that redials when its connection drops during a
// run, counting each reconnect; publishes while it is down fail.
type client struct {
	id    identity
	addr  string
	d     *dialer
	onMsg func(*paho.Publish)
	c     *counters

	ctx     context.Context
	mu      sync.Mutex
	cur     *paho.Client
	cur3    mqtt3.Client // instead of cur for MQTT 3.1.1
	closing atomic.Bool
	redial  atomic.Bool
}

func newClient(ctx context.Context, d *dialer, addr string, id identity, c *counters, onMsg func(*paho.Publish)) (*client, error) {
	if id.Addr != "" {
		addr = id.Addr
	}
	cl := &client{id: id, addr: addr, d: d, onMsg: onMsg, c: c, ctx: ctx}
	if err := cl.connect(); err != nil {
		return nil, err
	}
	c.connections.Add(1)
	return cl, nil
}

func (cl *client) connect() error {
	if cl.id.V3 {
		return cl.connect3()
	}
	conn, err := cl.d.dial(cl.ctx, cl.addr)
	if err != nil {
		return err
	}
	cfg := paho.ClientConfig{
		Conn:               conn,
		OnClientError:      func(error) { cl.lost() },
		OnServerDisconnect: func(*paho.Disconnect) { cl.lost() },
	}
	if cl.onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			cl.onMsg(p.Packet)
			return true, nil
		}}
	}
	pc := paho.NewClient(cfg)
	cctx, cancel := context.WithTimeout(cl.ctx, 30*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: cl.id.ClientID, KeepAlive: 60, CleanStart: true}
	if cl.id.Username != "" {
		cp.Username, cp.UsernameFlag = cl.id.Username, true
		cp.Password, cp.PasswordFlag = []byte(cl.id.Password), true
	}
	if ack, err := pc.Connect(cctx, cp); err != nil {
		_ = conn.Close()
		if ack != nil && ack.ReasonCode >= 0x80 {
			return fmt.Errorf("connect %s: %w", cl.id.ClientID, &refusedError{what: "connect", code: ack.ReasonCode})
		}
		return fmt.Errorf("connect %s: %w", cl.id.ClientID, err)
	}
	if len(cl.id.Subs) > 0 {
		s := &paho.Subscribe{}
		for _, t := range cl.id.Subs {
			s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: t, QoS: 1})
		}
		ack, err := pc.Subscribe(cctx, s)
		if err != nil {
			_ = pc.Disconnect(&paho.Disconnect{})
			return fmt.Errorf("subscribe %s: %w", cl.id.ClientID, err)
		}
		for _, rc := range ack.Reasons {
			if rc > 2 {
				_ = pc.Disconnect(&paho.Disconnect{})
				return fmt.Errorf("subscribe %s: %w", cl.id.ClientID, &refusedError{what: "subscribe", code: rc})
			}
		}
	}
	cl.mu.Lock()
	cl.cur = pc
	cl.mu.Unlock()
	return nil
}

// lost redials in the background unless the run is ending.
func (cl *client) lost() {
	if cl.closing.Load() || cl.ctx.Err() != nil || !cl.redial.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer cl.redial.Store(false)
		for cl.ctx.Err() == nil && !cl.closing.Load() {
			if err := cl.connect(); err == nil {
				cl.c.reconnects.Add(1)
				return
			}
			select {
			case <-time.After(250 * time.Millisecond):
			case <-cl.ctx.Done():
			}
		}
	}()
}

var errDown = errors.New("connection down")

// refusedError is the server saying no with a reason code (a PUBACK,
// CONNACK or SUBACK of 0x80 or more), as opposed to a network failure.
type refusedError struct {
	what string // publish, connect, subscribe
	code byte
}

func (e *refusedError) Error() string { return fmt.Sprintf("%s refused: reason 0x%x", e.what, e.code) }

// isRefused reports whether err is the server's refusal.
func isRefused(err error) bool {
	var r *refusedError
	return errors.As(err, &r)
}

// publish sends one QoS 1 message and waits for its PUBACK.
func (cl *client) publish(ctx context.Context, topic string, payload []byte) error {
	cl.mu.Lock()
	pc, pc3 := cl.cur, cl.cur3
	cl.mu.Unlock()
	if pc3 != nil {
		return publish3(ctx, pc3, topic, payload)
	}
	if pc == nil {
		return errDown
	}
	resp, err := pc.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	// paho returns an error along with a refusing PUBACK: the reason code
	// is what tells a refusal from a lost connection.
	if resp != nil && resp.ReasonCode >= 0x80 {
		return &refusedError{what: "publish", code: resp.ReasonCode}
	}
	return err
}

func (cl *client) close() {
	cl.closing.Store(true)
	cl.mu.Lock()
	pc, pc3 := cl.cur, cl.cur3
	cl.mu.Unlock()
	if pc != nil {
		_ = pc.Disconnect(&paho.Disconnect{})
	}
	if pc3 != nil {
		pc3.Disconnect(250)
	}
}

// connectAll opens one client per identity, parallelism at a time.
func connectAll(ctx context.Context, d *dialer, addr string, ids []identity, c *counters, onMsg func(i int) func(*paho.Publish)) ([]*client, error) {
	out := make([]*client, len(ids))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for i := range ids {
		if first.Load() != nil || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var h func(*paho.Publish)
			if onMsg != nil {
				h = onMsg(i)
			}
			cl, err := newClient(ctx, d, addr, ids[i], c, h)
			if err != nil {
				first.CompareAndSwap(nil, &err)
				return
			}
			out[i] = cl
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		closeAll(out)
		return nil, *e
	}
	if ctx.Err() != nil {
		closeAll(out)
		return nil, ctx.Err()
	}
	return out, nil
}

func closeAll(cs []*client) {
	for _, c := range cs {
		if c != nil {
			c.close()
		}
	}
}
