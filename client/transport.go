package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
)

// session is one MQTT connection, whichever protocol version: the rest of
// the client never sees paho.
type session interface {
	// publish sends at qos and, for QoS 1, waits for the PUBACK; a
	// refusing MQTT 5 PUBACK is a *refusal.
	publish(ctx context.Context, topic string, qos byte, payload []byte) error
	// subscribe subscribes at QoS 1; a refused filter is a *refusal.
	subscribe(ctx context.Context, filters ...string) error
	unsubscribe(ctx context.Context, filters ...string) error
	done() <-chan struct{}
	close()
}

// refusal is a reason code of 0x80 or more in a PUBACK, SUBACK or CONNACK
// (MQTT 3.1.1 return codes included).
type refusal struct {
	what string
	code byte
}

func (r *refusal) Error() string { return fmt.Sprintf("%s refused: reason 0x%02x", r.what, r.code) }

// badCredentials reports whether a CONNACK refused the token: MQTT 5
// 0x86 or 3.1.1 return code 4.
func badCredentials(err error) bool {
	var r *refusal
	return errors.As(err, &r) && r.what == "connect" && (r.code == 0x86 || r.code == 0x04)
}

type connectParams struct {
	clientID, username, password string
	willTopic                    string
	keepAlive                    uint16
	onPublish                    func(topic string, payload []byte)
}

// dialSession opens a connection as o describes and logs in.
func dialSession(ctx context.Context, o *Options, p connectParams) (session, error) {
	if o.ProtocolVersion == 3 || o.ProtocolVersion == 4 {
		return dial3(ctx, o, p)
	}
	return dial5(ctx, o, p)
}

func (o *Options) rawConn(ctx context.Context) (net.Conn, error) {
	if o.WSURL != "" {
		return dialWS(ctx, o.WSURL)
	}
	if o.Dialer != nil {
		return o.Dialer(ctx, o.MQTTAddr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", o.MQTTAddr)
}

type session5 struct {
	c    *paho.Client
	conn net.Conn
}

func dial5(ctx context.Context, o *Options, p connectParams) (session, error) {
	conn, err := o.rawConn(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			p.onPublish(r.Packet.Topic, r.Packet.Payload)
			return true, nil
		}},
		OnClientError:      func(error) {},
		OnServerDisconnect: func(*paho.Disconnect) {},
	})
	cp := &paho.Connect{
		ClientID: p.clientID, KeepAlive: p.keepAlive, CleanStart: true,
		Username: p.username, UsernameFlag: true, Password: []byte(p.password), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: p.willTopic, QoS: 1, Retain: true, Payload: []byte("offline")},
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		if ack != nil && ack.ReasonCode >= 0x80 {
			return nil, &refusal{what: "connect", code: ack.ReasonCode}
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &session5{c: c, conn: conn}, nil
}

func (s *session5) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	if qos == 0 {
		_, err := s.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: payload})
		return err
	}
	// paho keeps waiting for the PUBACK of a lost connection (for a
	// resumed session); this session starts clean, so its loss ends the
	// attempt at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := s.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if resp != nil && resp.ReasonCode >= 0x80 {
		return &refusal{what: "publish", code: resp.ReasonCode}
	}
	return err
}

func (s *session5) subscribe(ctx context.Context, filters ...string) error {
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := s.c.Subscribe(ctx, sub)
	if ack != nil {
		for _, rc := range ack.Reasons {
			if rc >= 0x80 {
				return &refusal{what: "subscribe", code: rc}
			}
		}
	}
	return err
}

func (s *session5) unsubscribe(ctx context.Context, filters ...string) error {
	_, err := s.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: filters})
	return err
}

func (s *session5) done() <-chan struct{} { return s.c.Done() }

func (s *session5) close() {
	_ = s.c.Disconnect(&paho.Disconnect{})
	_ = s.conn.Close()
}

// session3 is MQTT 3.1.1 through paho.mqtt.golang, with its own redial
// off: the Client reconnects, the same way for both versions.
type session3 struct {
	c    mqtt3.Client
	lost chan struct{}
	once sync.Once
}

func dial3(ctx context.Context, o *Options, p connectParams) (session, error) {
	s := &session3{lost: make(chan struct{})}
	broker := "tcp://" + o.MQTTAddr
	if o.WSURL != "" {
		broker = o.WSURL
	}
	opts := mqtt3.NewClientOptions().AddBroker(broker).
		SetClientID(p.clientID).SetUsername(p.username).SetPassword(p.password).
		SetProtocolVersion(4).SetCleanSession(true).SetKeepAlive(time.Duration(p.keepAlive)*time.Second).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetWriteTimeout(o.RequestTimeout).
		SetWill(p.willTopic, "offline", 1, true).
		SetConnectionLostHandler(func(mqtt3.Client, error) { s.once.Do(func() { close(s.lost) }) }).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { p.onPublish(m.Topic(), m.Payload()) })
	if dl, ok := ctx.Deadline(); ok {
		opts.SetConnectTimeout(time.Until(dl))
	}
	if o.WSURL == "" {
		opts.SetCustomOpenConnectionFn(func(*url.URL, mqtt3.ClientOptions) (net.Conn, error) {
			return o.rawConn(ctx)
		})
	}
	s.c = mqtt3.NewClient(opts)
	tok := s.c.Connect()
	if err := wait3(ctx, tok); err != nil {
		if ct, ok := tok.(*mqtt3.ConnectToken); ok && ct.ReturnCode() != 0 {
			return nil, &refusal{what: "connect", code: ct.ReturnCode()}
		}
		s.c.Disconnect(0)
		return nil, fmt.Errorf("connect: %w", err)
	}
	return s, nil
}

func wait3(ctx context.Context, tok mqtt3.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// await waits for tok unless the connection goes first: paho.mqtt.golang
// leaves some tokens of a lost connection open.
func (s *session3) await(ctx context.Context, tok mqtt3.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-s.lost:
		return errors.New("connection lost")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MQTT 3.1.1 has no refusing PUBACK: a refusal comes as an error event on
// users/{me}/events, which the Client matches by cmid or request id.
func (s *session3) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	// paho.mqtt.golang's Publish itself can block (up to its write
	// timeout) when the connection went between its check and its queue;
	// the connection's loss must end the attempt at once.
	res := make(chan mqtt3.Token, 1)
	go func() { res <- s.c.Publish(topic, qos, false, payload) }()
	select {
	case tok := <-res:
		return s.await(ctx, tok)
	case <-s.lost:
		return errors.New("connection lost")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *session3) subscribe(ctx context.Context, filters ...string) error {
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := s.c.SubscribeMultiple(m, nil)
	if err := s.await(ctx, tok); err != nil {
		return err
	}
	for _, rc := range tok.(*mqtt3.SubscribeToken).Result() {
		if rc >= 0x80 {
			return &refusal{what: "subscribe", code: rc}
		}
	}
	return nil
}

func (s *session3) unsubscribe(ctx context.Context, filters ...string) error {
	return s.await(ctx, s.c.Unsubscribe(filters...))
}

func (s *session3) done() <-chan struct{} { return s.lost }

func (s *session3) close() {
	s.c.Disconnect(100)
	s.once.Do(func() { close(s.lost) })
}

// dialWS opens MQTT over WebSocket (subprotocol mqtt) as a net.Conn for
// paho.golang.
func dialWS(ctx context.Context, u string) (net.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, Proxy: http.ProxyFromEnvironment}
	ws, _, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return nil, err
	}
	return WebSocketConn(ws), nil
}

// wsConn reads and writes MQTT bytes as binary WebSocket messages.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
	mu sync.Mutex // gorilla allows one writer at a time
}

// WebSocketConn turns a WebSocket into the byte stream an MQTT client
// reads and writes (MQTT over WebSocket travels in binary frames that need
// not follow packet boundaries). Writes are serialised: the WebSocket
// library allows one writer at a time.
func WebSocketConn(ws *websocket.Conn) net.Conn { return &wsConn{Conn: ws.NetConn(), ws: ws} }

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
