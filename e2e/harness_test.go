// Package e2e drives a whole chatd node (the same wiring `chatd serve` uses)
// over real sockets with real MQTT and HTTP clients.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"

	"github.com/mqchat/mqchat/client"
	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/apptest"
	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/pgtest"
)

// waitTimeout bounds every wait; it is only reached when something is wrong,
// so it is generous for loaded CI machines.
const waitTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(pgtest.Main(m)) // stops the PostgreSQL server of TestOnPostgres
}

type server struct {
	app   *app.App
	cfg   config.Config
	addrs app.Addrs
	base  string // http://host:port
}

// testConfig listens on free loopback ports in a fresh data dir.
func testConfig(t *testing.T) config.Config {
	cfg := apptest.Config(t.TempDir())
	apptest.Unthrottled(&cfg)
	cfg.Log.Level = "warn"
	useBackend(t, &cfg)
	return cfg
}

func startServer(t *testing.T, mutate func(*config.Config)) *server {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	s, _ := startManual(t, cfg)
	return s
}

// startManual starts a node on cfg (ports as bound); stop shuts it down,
// and cleanup does if the test did not.
func startManual(t *testing.T, cfg config.Config) (*server, func()) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(cfg, log)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	addrs := a.Addrs()
	return &server{app: a, cfg: cfg, addrs: addrs, base: "http://" + addrs.HTTP}, stop
}

// testWriter sends server logs to the test's output, so they show only for
// failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type account struct {
	ID, Username, Token, Refresh string
}

// call makes a REST request and decodes a JSON response into out (if non-nil).
func (s *server) call(t *testing.T, method, path, token string, body any, header map[string]string, out any) int {
	t.Helper()
	var raw string
	switch b := body.(type) {
	case nil:
	case string:
		raw = b
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(enc)
	}
	h := map[string]string{}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	for k, v := range header {
		h[k] = v
	}
	res := rawHTTP(t, s, method, path, h, raw)
	if out != nil && len(res.body) > 0 {
		if err := json.Unmarshal(res.body, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, res.body, err)
		}
	}
	return res.status
}

func (s *server) register(t *testing.T, name string) account {
	t.Helper()
	var tok struct {
		UserID       string `json:"user_id"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if st := s.call(t, "POST", "/v1/auth/register", "", map[string]string{"username": name, "password": "correct horse"}, nil, &tok); st != http.StatusCreated {
		t.Fatalf("register %s: status %d", name, st)
	}
	return account{ID: tok.UserID, Username: name, Token: tok.AccessToken, Refresh: tok.RefreshToken}
}

type historyPage struct {
	Messages []inboxMsg `json:"messages"`
	Next     *uint64    `json:"next"`
}

func (s *server) history(t *testing.T, a account, chat, query string) historyPage {
	t.Helper()
	var page historyPage
	if st := s.call(t, "GET", "/v1/chats/"+chat+"/messages"+query, a.Token, nil, nil, &page); st != http.StatusOK {
		t.Fatalf("history %s: status %d", chat, st)
	}
	return page
}

func directChat(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// inboxMsg is a delivered chat message as a client sees it.
type inboxMsg struct {
	Chat   string          `json:"chat"`
	Seq    uint64          `json:"seq"`
	ID     string          `json:"id"`
	From   string          `json:"from"`
	CMID   string          `json:"cmid"`
	Type   string          `json:"type"`
	Body   json.RawMessage `json:"body"`
	SentAt string          `json:"sent_at"`
}

type event struct {
	Type       string `json:"type"`
	User       string `json:"user"`
	Read       uint64 `json:"read_seq"`
	CMID       string `json:"cmid"`
	Code       string `json:"code"`
	ReasonCode byte   `json:"reason_code"`
	Message    string `json:"message"`
	Chat       string `json:"chat"`
	Seq        uint64 `json:"seq"`
	Duplicate  bool   `json:"duplicate"`
	Topic      string `json:"topic"`
}

type received struct {
	Topic   string
	Payload []byte
	Retain  bool // set on retained messages sent at SUBSCRIBE
}

func (r received) inbox(t *testing.T) inboxMsg {
	t.Helper()
	var m inboxMsg
	if err := json.Unmarshal(r.Payload, &m); err != nil {
		t.Fatalf("inbox payload %q: %v", r.Payload, err)
	}
	return m
}

// ReadSeq is a receipt's read cursor.
func (e event) ReadSeq() uint64 { return e.Read }

func (r received) event(t *testing.T) event {
	t.Helper()
	var e event
	if err := json.Unmarshal(r.Payload, &e); err != nil {
		t.Fatalf("event payload %q: %v", r.Payload, err)
	}
	return e
}

// mailbox collects what a client receives.
type mailbox chan received

func newMailbox() mailbox { return make(mailbox, 4096) }

// next waits for the next message matching pred, discarding the others.
func (m mailbox) next(t *testing.T, what string, pred func(received) bool) received {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case r := <-m:
			if pred == nil || pred(r) {
				return r
			}
		case <-deadline:
			dumpGoroutines(t)
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// onEvent matches events of one type on uid's events topic, skipping the
// receipts and other events that share it and arrive on their own timing.
func onEvent(uid, typ string) func(received) bool {
	return func(r received) bool {
		var e struct {
			Type string `json:"type"`
		}
		return r.Topic == "users/"+uid+"/events" && json.Unmarshal(r.Payload, &e) == nil && e.Type == typ
	}
}

func onTopic(topic string) func(received) bool {
	return func(r received) bool { return r.Topic == topic }
}

// v5 is a paho.golang (MQTT 5) client.
type v5 struct {
	c    *paho.Client
	box  mailbox
	acct account
}

func envelope(to, cmid, body string) []byte {
	raw, _ := json.Marshal(map[string]any{"to": "user:" + to, "cmid": cmid, "type": "text", "body": body})
	return raw
}

func dialV5(t *testing.T, conn net.Conn, a account, device string) *v5 {
	t.Helper()
	c, ack, err := connectV5(conn, a.ID, a.Token, a.ID+"/"+device, nil)
	if err != nil {
		t.Fatalf("v5 connect %s/%s: %v (connack %+v)", a.Username, device, err, ack)
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	c.acct = a
	return c
}

func connectV5(conn net.Conn, user, pass, clientID string, will *paho.WillMessage) (*v5, *paho.Connack, error) {
	return connectV5KeepAlive(conn, user, pass, clientID, will, 30)
}

func connectWithKeepAlive(t *testing.T, s *server, a account, keepAlive uint16) *paho.Connack {
	t.Helper()
	c, ack, err := connectV5KeepAlive(tcpConn(t, s.addrs.MQTT), a.ID, a.Token, fmt.Sprintf("%s/ka%d", a.ID, keepAlive), nil, keepAlive)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
	return ack
}

func connectV5KeepAlive(conn net.Conn, user, pass, clientID string, will *paho.WillMessage, keepAlive uint16) (*v5, *paho.Connack, error) {
	box := newMailbox()
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			box <- received{Topic: p.Packet.Topic, Payload: p.Packet.Payload, Retain: p.Packet.Retain}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{
		ClientID: clientID, Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != "",
		KeepAlive: keepAlive, CleanStart: true, WillMessage: will,
	})
	return &v5{c: c, box: box}, ack, err
}

func (c *v5) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	opts := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		opts[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if ack == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return ack.Reasons
}

func (c *v5) publish(t *testing.T, topic string, payload []byte) (byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if resp == nil {
		if err == nil {
			err = fmt.Errorf("no response")
		}
		return 0, err
	}
	return resp.ReasonCode, err
}

func (c *v5) send(t *testing.T, to, cmid, body string) {
	t.Helper()
	rc, err := c.publish(t, "users/"+c.acct.ID+"/send", envelope(to, cmid, body))
	if err != nil || rc != 0 {
		dumpGoroutines(t)
		t.Fatalf("send %s: reason 0x%02x, %v", cmid, rc, err)
	}
}

func tcpConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// wsConn dials MQTT over WebSocket and adapts it to a net.Conn for paho.
func wsConn(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
	ws, _, err := d.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	// paho writes one packet in several Writes and from several goroutines
	// (the pinger, acks); a Locker conn makes it hold the lock for the whole
	// packet, as writev does for TCP.
	return packets.NewThreadSafeConn(client.WebSocketConn(ws))
}

// v3 is an Eclipse paho.mqtt.golang (MQTT 3.1.1) client.
type v3 struct {
	c    paho3.Client
	box  mailbox
	acct account
}

func dialV3(t *testing.T, url string, a account, device string) *v3 {
	t.Helper()
	c, err := connectV3(url, a.ID, a.Token, a.ID+"/"+device)
	if err != nil {
		t.Fatalf("v3 connect %s/%s: %v", a.Username, device, err)
	}
	c.acct = a
	t.Cleanup(func() { c.c.Disconnect(100) })
	return c
}

func connectV3(url, user, pass, clientID string) (*v3, error) {
	box := newMailbox()
	opts := paho3.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(true).SetConnectTimeout(waitTimeout).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
			box <- received{Topic: m.Topic(), Payload: m.Payload(), Retain: m.Retained()}
		})
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return &v3{c: c, box: box}, nil
}

func (c *v3) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("subscribe %s timed out", filter)
	}
	res := tok.(*paho3.SubscribeToken).Result()
	if len(res) != 1 {
		t.Fatalf("subscribe %s: %d results", filter, len(res))
	}
	for _, rc := range res { // keyed by filter, except paho strips $share/ prefixes
		return rc
	}
	return 0
}

func (c *v3) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	tok := c.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(waitTimeout) {
		dumpGoroutines(t)
		t.Fatalf("publish to %s timed out", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
}

func (c *v3) send(t *testing.T, to, cmid, body string) {
	t.Helper()
	c.publish(t, "users/"+c.acct.ID+"/send", envelope(to, cmid, body))
}

// dumpGoroutines logs every goroutine's stack: the server runs in this
// process, so a stuck delivery shows where it is stuck.
func dumpGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 4<<20)
	t.Logf("goroutines at timeout:\n%s", buf[:runtime.Stack(buf, true)])
}

// eventually retries check until it returns nil or waitTimeout passes, for
// state the server settles asynchronously (the sender's own cursors after
// fan-out, counters bumped after the store write they count).
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
