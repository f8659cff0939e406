package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Client is one device of one user, connected to chatd over MQTT. It is
// safe for concurrent use.
type Client struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context // the client's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	msgs   *queue[Message]
	events *queue[Event]
	kick   chan struct{} // wakes the syncer

	mu      sync.Mutex
	uid     string
	token   string
	refresh string
	cur     session       // nil while reconnecting
	ready   chan struct{} // closed when cur is set
	watched map[string]bool
	waiters map[string]chan reply
	sync    syncState
}

// reply is what answers a request: an event on users/{me}/events matched
// by its cmid, request id or op id, or for a send the message's own copy.
type reply struct {
	typ string
	raw json.RawMessage
	msg *Message
}

// Dial logs in if needed, connects, and establishes where each chat
// starts (Options.Since, or now) before it returns; from then on the
// client stays connected until Close, reconnecting and catching up by
// itself.
func Dial(ctx context.Context, o Options) (*Client, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: o, log: o.Logger, ctx: lctx, cancel: cancel,
		msgs: newQueue[Message](), events: newQueue[Event](), kick: make(chan struct{}, 1),
		token: o.Token, uid: o.UserID, refresh: o.RefreshToken, ready: make(chan struct{}),
		watched: map[string]bool{}, waiters: map[string]chan reply{},
		sync: newSyncState(),
	}
	s, err := c.connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c.setSession(s)
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.msgs.run(lctx) }()
	go func() { defer c.wg.Done(); c.events.run(lctx) }()
	go func() { defer c.wg.Done(); c.supervise(s) }()
	if err := c.baseline(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("first sync: %w", err)
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.syncer() }()
	c.poke()
	return c, nil
}

// UserID is the id of the user this client is logged in as.
func (c *Client) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uid
}

// Messages delivers every chat message stored after Dial (or after
// Options.Since), the user's own included, once per (chat, seq) and in seq
// order within a chat, whether it came live or was fetched after a
// reconnect. It is closed by Close. Read it: what is not read piles up in
// memory.
func (c *Client) Messages() <-chan Message { return c.msgs.out }

// Events delivers receipts, typing notices, presence, group changes,
// unmatched errors, and "connected"/"disconnected". It is closed by Close.
func (c *Client) Events() <-chan Event { return c.events.out }

// Close disconnects and stops every goroutine of the client; calls in
// progress return ErrClosed.
func (c *Client) Close() {
	c.cancel()
	c.mu.Lock()
	s := c.cur
	c.mu.Unlock()
	if s != nil {
		s.close()
	}
	c.wg.Wait()
}

// connect opens one session and subscribes to the user's topics and the
// watched presences; a refused token is replaced by a fresh login once.
func (c *Client) connect(ctx context.Context) (session, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*c.opts.RequestTimeout)
	defer cancel()
	uid, tok, err := c.credentials(ctx, false)
	if err != nil {
		return nil, err
	}
	s, err := c.open(ctx, uid, tok)
	if badCredentials(err) && (c.opts.Password != "" || c.opts.RefreshToken != "") {
		if uid, tok, err = c.credentials(ctx, true); err != nil {
			return nil, err
		}
		s, err = c.open(ctx, uid, tok)
	}
	if err != nil {
		return nil, err
	}
	if err := s.subscribe(ctx, "users/"+uid+"/inbox", "users/"+uid+"/events"); err != nil {
		s.close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	c.mu.Lock()
	var watched []string
	for u := range c.watched {
		watched = append(watched, "presence/"+u)
	}
	c.mu.Unlock()
	for _, f := range watched {
		// One refused presence (the other user blocked us, the group is
		// gone) must not cost the connection.
		if err := s.subscribe(ctx, f); err != nil {
			c.log.Warn("presence watch refused", "filter", f, "err", err)
		}
	}
	return s, nil
}

func (c *Client) open(ctx context.Context, uid, tok string) (session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	return dialSession(ctx, &c.opts, connectParams{
		clientID: uid + "/" + c.opts.DeviceID, username: uid, password: tok,
		willTopic: "presence/" + uid, keepAlive: uint16(c.opts.KeepAlive / time.Second),
		onPublish: c.route,
	})
}

func (c *Client) setSession(s session) {
	c.mu.Lock()
	c.cur = s
	close(c.ready)
	c.mu.Unlock()
}

// supervise keeps the client connected: when a session ends it redials
// with a growing pause, then has the syncer catch up.
func (c *Client) supervise(s session) {
	for {
		c.events.push(Event{Type: "connected"})
		select {
		case <-s.done():
		case <-c.ctx.Done():
			s.close()
			return
		}
		c.mu.Lock()
		c.cur = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
		c.log.Info("chat connection lost; reconnecting", "device", c.opts.DeviceID)
		c.events.push(Event{Type: "disconnected", Err: errors.New("connection lost")})
		pause := c.opts.ReconnectMin
		for {
			var err error
			if s, err = c.connect(c.ctx); err == nil {
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			c.log.Warn("reconnect failed", "err", err, "retry_in", pause)
			// Jitter keeps a fleet of devices from reconnecting in step
			// after a server restart.
			if !c.sleep(c.ctx, pause/2+rand.N(pause/2+1)) {
				return
			}
			pause = min(pause*2, c.opts.ReconnectMax)
		}
		c.mu.Lock()
		c.sync.needFull = true
		c.mu.Unlock()
		c.setSession(s)
		c.poke()
	}
}

// session waits for a connection.
func (c *Client) session(ctx context.Context) (session, error) {
	for {
		c.mu.Lock()
		s, ready := c.cur, c.ready
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-c.ctx.Done():
		return false
	}
}

// route handles one incoming publish on paho's goroutine: it only parses
// and queues, never waits.
func (c *Client) route(topic string, payload []byte) {
	c.mu.Lock()
	uid := c.uid
	c.mu.Unlock()
	switch {
	case topic == "users/"+uid+"/inbox":
		var m Message
		if err := json.Unmarshal(payload, &m); err != nil {
			c.log.Warn("undecodable inbox message", "err", err)
			return
		}
		c.accept(m, false)
	case topic == "users/"+uid+"/events":
		c.routeEvent(payload)
	case strings.HasPrefix(topic, "presence/"):
		var p struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(payload, &p)
		c.events.push(Event{Type: "presence", User: strings.TrimPrefix(topic, "presence/"), Status: p.Status, Raw: payload})
	}
}

func (c *Client) routeEvent(payload []byte) {
	var e struct {
		Type         string `json:"type"`
		CMID         string `json:"cmid"`
		RequestID    string `json:"request_id"`
		OpID         string `json:"op_id"`
		Chat         string `json:"chat"`
		User         string `json:"user"`
		ReadSeq      uint64 `json:"read_seq"`
		DeliveredSeq uint64 `json:"delivered_seq"`
		Code         string `json:"code"`
		Message      string `json:"message"`
	}
	if err := json.Unmarshal(payload, &e); err != nil {
		c.log.Warn("undecodable event", "err", err)
		return
	}
	var key string
	switch {
	case e.CMID != "" && (e.Type == "sent" || e.Type == "error"):
		key = "cmid:" + e.CMID
	case e.RequestID != "":
		key = "req:" + e.RequestID
	case e.OpID != "":
		key = "op:" + e.OpID
	}
	if key != "" && c.answer(key, reply{typ: e.Type, raw: payload}) {
		return
	}
	if e.Type == "sent" || e.Type == "sync" || e.Type == "history" {
		return // another device's, or a late answer to a finished request
	}
	ev := Event{Type: e.Type, Chat: e.Chat, User: e.User, ReadSeq: e.ReadSeq, DeliveredSeq: e.DeliveredSeq, Raw: payload}
	if e.Type == "error" {
		ev.Err = &Error{Code: e.Code, Message: e.Message}
	}
	c.events.push(ev)
}

// answer hands r to the request waiting on key, if any.
func (c *Client) answer(key string, r reply) bool {
	c.mu.Lock()
	ch, ok := c.waiters[key]
	c.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case ch <- r:
	default: // an answer to an earlier attempt is already waiting
	}
	return true
}

func (c *Client) wait(key string) (chan reply, func()) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	c.waiters[key] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.waiters, key)
		c.mu.Unlock()
	}
}

// request publishes payload on the user's topic until an answer keyed key
// arrives, the same payload on each attempt (a new connection, no answer
// within RequestTimeout, a refusal the server says to retry): the server
// deduplicates by the cmid, request id or op id in it. A refusal that is
// final comes back as *Error.
func (c *Client) request(ctx context.Context, key, topic string, payload []byte) (reply, error) {
	ch, done := c.wait(key)
	defer done()
	pause := c.opts.ReconnectMin
	for {
		s, err := c.session(ctx)
		if err != nil {
			return reply{}, err
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		err = s.publish(actx, c.topic(topic), 1, payload)
		var ref *refusal
		if err != nil && !errors.As(err, &ref) && actx.Err() != nil && ctx.Err() == nil {
			// No PUBACK at all on a connection that looks alive: treat it
			// as dead, so the retry goes over a new one.
			c.log.Warn("no answer to a publish; reconnecting", "topic", topic)
			s.close()
		}
		// A refusal (MQTT 5 PUBACK) is followed by its error event, which
		// carries the code and message: wait for it like for any answer.
		select {
		case r := <-ch:
			cancel()
			if r.typ != "error" {
				return r, nil
			}
			var e struct{ Code, Message string }
			_ = json.Unmarshal(r.raw, &e)
			if !retryable(e.Code) {
				return r, &Error{Code: e.Code, Message: e.Message}
			}
			c.log.Debug("refused, retrying", "code", e.Code, "topic", topic)
			if !c.sleep(ctx, pause) {
				return reply{}, c.stopped(ctx)
			}
			pause = min(pause*2, c.opts.ReconnectMax)
		case <-s.done():
			cancel()
		case <-actx.Done():
			cancel()
			if ctx.Err() != nil {
				return reply{}, ctx.Err()
			}
		case <-c.ctx.Done():
			cancel()
			return reply{}, ErrClosed
		}
	}
}

func (c *Client) stopped(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrClosed
}

// publishAcked publishes until a PUBACK, for requests answered by nothing
// else (read receipts); MQTT 3.1.1 refusals come only as error events.
func (c *Client) publishAcked(ctx context.Context, topic string, payload []byte) error {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		err = s.publish(actx, c.topic(topic), 1, payload)
		cancel()
		var ref *refusal
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ref):
			return &Error{Code: reasonCode(ref.code), Message: ref.Error()}
		case ctx.Err() != nil:
			return ctx.Err()
		case c.ctx.Err() != nil:
			return ErrClosed
		}
		// The connection went: the receipt is retried on the next one.
		select {
		case <-s.done():
		case <-c.ctx.Done():
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reasonCode names an MQTT 5 reason code as the protocol documents it.
func reasonCode(rc byte) string {
	switch rc {
	case 0x87:
		return "not_authorized"
	case 0x99:
		return "invalid_payload"
	case 0x95:
		return "payload_too_large"
	case 0x97:
		return "quota_exceeded"
	case 0x96:
		return "rate_limited"
	case 0x89:
		return "unavailable"
	case 0x83:
		return "conflict"
	}
	return "internal"
}

func (c *Client) topic(name string) string { return "users/" + c.UserID() + "/" + name }
