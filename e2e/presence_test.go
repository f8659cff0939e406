package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqchat/mqchat/internal/config"
)

// presenceMsg is the retained aggregate on presence/{uid}.
type presenceMsg struct {
	UserID   string `json:"user_id"` // REST only
	Status   string `json:"status"`
	LastSeen string `json:"last_seen"`
	Devices  int    `json:"devices"`
}

// nextPresence returns the next presence message of uid, retained or live.
func nextPresence(t *testing.T, box mailbox, uid string) presenceMsg {
	t.Helper()
	return decodePresence(t, box.next(t, "presence of "+uid, onTopic("presence/"+uid)))
}

// nextLive returns the next live presence message of uid, skipping retained
// ones: a publish racing a SUBSCRIBE may reach the subscriber both live and
// as the retained message mochi sends after the SUBACK.
func nextLive(t *testing.T, box mailbox, uid string) presenceMsg {
	t.Helper()
	return decodePresence(t, box.next(t, "live presence of "+uid, func(r received) bool {
		return r.Topic == "presence/"+uid && !r.Retain
	}))
}

// nextChange returns the next live presence message of uid that differs
// from prev: the same aggregate delivered twice (live and as the retained
// message of a racing SUBSCRIBE) is no change.
func nextChange(t *testing.T, box mailbox, uid string, prev presenceMsg) presenceMsg {
	t.Helper()
	for {
		if p := nextLive(t, box, uid); p != prev {
			return p
		}
	}
}

// waitPresence skips presence messages of uid until one with status and devices.
func waitPresence(t *testing.T, box mailbox, uid, status string, devices int) presenceMsg {
	t.Helper()
	for {
		if p := nextPresence(t, box, uid); p.Status == status && p.Devices == devices {
			return p
		}
	}
}

func decodePresence(t *testing.T, r received) presenceMsg {
	t.Helper()
	var p presenceMsg
	if err := json.Unmarshal(r.Payload, &p); err != nil {
		t.Fatalf("presence payload %q: %v", r.Payload, err)
	}
	return p
}

func wantPresence(t *testing.T, got presenceMsg, status string, devices int) {
	t.Helper()
	if got.Status != status || got.Devices != devices {
		t.Fatalf("presence = %+v, want %s with %d devices", got, status, devices)
	}
	if status == "offline" {
		if _, err := time.Parse(time.RFC3339, got.LastSeen); err != nil {
			t.Fatalf("offline presence %+v: last_seen: %v", got, err)
		}
	}
}

// freezeConn lets a test make a connection go silent without closing it,
// as when a phone loses its network: the server only notices through the
// keep-alive.
type freezeConn struct {
	net.Conn
	frozen atomic.Bool
	once   sync.Once
	done   chan struct{}
}

func newFreezeConn(t *testing.T, c net.Conn) *freezeConn {
	fc := &freezeConn{Conn: c, done: make(chan struct{})}
	t.Cleanup(func() { _ = c.Close() })
	return fc
}

func (c *freezeConn) freeze() { c.frozen.Store(true) }

func (c *freezeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.frozen.Load() {
		<-c.done
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *freezeConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *freezeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	if c.frozen.Load() {
		return nil // the socket stays open; only the server's keep-alive ends it
	}
	return c.Conn.Close()
}

// presenceDevice is one MQTT connection of either protocol version, with
// the will a client should set: presence/{uid}, "offline", QoS 1, retained.
type presenceDevice struct {
	box        mailbox
	conn       *freezeConn
	disconnect func() // clean DISCONNECT
	subscribe  func(filter string) byte
}

// kill closes the socket without DISCONNECT.
func (d *presenceDevice) kill() { _ = d.conn.Conn.Close() }

func connectDevice(t *testing.T, s *server, proto int, a account, name string, keepAlive uint16) *presenceDevice {
	t.Helper()
	conn := newFreezeConn(t, tcpConn(t, s.addrs.MQTT))
	clientID := a.ID + "/" + name
	will := "presence/" + a.ID
	if proto == 5 {
		// A Locker conn: paho then writes each packet whole, as it does with
		// writev on a plain TCP conn; otherwise a PUBACK and a SUBSCRIBE
		// written from two goroutines can interleave.
		c, ack, err := connectV5KeepAlive(packets.NewThreadSafeConn(conn), a.ID, a.Token, clientID,
			&paho.WillMessage{Topic: will, Payload: []byte("offline"), QoS: 1, Retain: true}, keepAlive)
		if err != nil {
			t.Fatalf("v5 connect %s: %v (connack %+v)", clientID, err, ack)
		}
		d := &presenceDevice{box: c.box, conn: conn}
		d.disconnect = func() { _ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }
		d.subscribe = func(filter string) byte {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			ack, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
			if ack == nil {
				dumpGoroutines(t)
				t.Fatalf("subscribe %s: %v", filter, err)
			}
			return ack.Reasons[0]
		}
		t.Cleanup(d.disconnect)
		return d
	}
	box := newMailbox()
	opts := paho3.NewClientOptions().AddBroker("tcp://"+s.addrs.MQTT).SetClientID(clientID).
		SetUsername(a.ID).SetPassword(a.Token).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(true).SetConnectTimeout(waitTimeout).
		SetKeepAlive(time.Duration(keepAlive)*time.Second).
		SetWill(will, "offline", 1, true).
		SetCustomOpenConnectionFn(func(*url.URL, paho3.ClientOptions) (net.Conn, error) { return conn, nil }).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
			box <- received{Topic: m.Topic(), Payload: m.Payload(), Retain: m.Retained()}
		})
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 connect %s: %v", clientID, tok.Error())
	}
	v := &v3{c: c, box: box, acct: a}
	d := &presenceDevice{box: box, conn: conn}
	d.disconnect = func() { c.Disconnect(100) }
	d.subscribe = func(filter string) byte { return v.subscribe(t, filter) }
	t.Cleanup(d.disconnect)
	return d
}

// refused is the SUBACK code of a refused subscription.
func refused(proto int) byte {
	if proto == 5 {
		return 0x87
	}
	return 0x80
}

// befriend gives a and b a 1:1 chat with a message that b accepted (a
// first message from a stranger is a message request), which lets them
// see each other's presence.
func befriend(t *testing.T, s *server, a, b account) {
	t.Helper()
	chat := directChat(a.ID, b.ID)
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/messages", a.Token, map[string]any{"body": "hi"},
		map[string]string{"Idempotency-Key": "hello-" + b.ID}, nil); st != http.StatusCreated {
		t.Fatalf("send: status %d", st)
	}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/accept", b.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("accept: status %d", st)
	}
}

func forEachProto(t *testing.T, f func(t *testing.T, proto int)) {
	for _, proto := range []int{3, 5} {
		t.Run(fmt.Sprintf("v%d", proto), func(t *testing.T) { f(t, proto) })
	}
}

// presenceConfig sets the grace period. These tests follow every change
// of the aggregate as it happens, so one user's publishes are not spaced
// out (presence.publish_interval is tested by TestPresenceStormIsolation
// and the presence package).
func presenceConfig(grace time.Duration) func(*config.Config) {
	return func(c *config.Config) { c.Presence.Grace, c.Presence.PublishInterval = grace, 0 }
}

// waitMetric waits until the sample named key reaches at least min.
func waitMetric(t *testing.T, s *server, key string, min float64) {
	t.Helper()
	eventually(t, key, func() error {
		if v := scrape(t, s)[key]; v < min {
			return fmt.Errorf("%v, never reached %v", v, min)
		}
		return nil
	})
}

// TestPresenceTwoDevicesDropped: one of two devices dropping keeps the user
// online; the second going silent (no DISCONNECT, no FIN) makes it offline
// after the keep-alive expiry plus the grace period, with last_seen set.
func TestPresenceTwoDevicesDropped(t *testing.T) {
	forEachProto(t, func(t *testing.T, proto int) {
		s := startServer(t, presenceConfig(300*time.Millisecond))
		alice, bob := s.register(t, "alice"), s.register(t, "bob")
		befriend(t, s, alice, bob)
		sub := connectDevice(t, s, proto, bob, "sub", 30)
		if rc := sub.subscribe("presence/" + alice.ID); rc != 1 {
			t.Fatalf("SUBACK for a chat partner's presence = 0x%02x", rc)
		}

		phone := connectDevice(t, s, proto, alice, "phone", 1)
		wantPresence(t, nextLive(t, sub.box, alice.ID), "online", 1)
		laptop := connectDevice(t, s, proto, alice, "laptop", 1)
		wantPresence(t, nextLive(t, sub.box, alice.ID), "online", 2)

		phone.kill()
		wantPresence(t, nextLive(t, sub.box, alice.ID), "online", 1)

		frozen := time.Now()
		laptop.conn.freeze()
		p := nextLive(t, sub.box, alice.ID)
		wantPresence(t, p, "offline", 0)
		// The server's deadline runs from the last packet it read (a ping
		// at most 1 s before the freeze): 1.5 × the 1 s keep-alive, then
		// the 300 ms grace period.
		if d := time.Since(frozen); d < 800*time.Millisecond {
			t.Fatalf("offline %v after the device went silent, before its keep-alive and grace expired", d)
		}
		var rest presenceMsg
		if st := s.call(t, "GET", "/v1/presence/"+alice.ID, bob.Token, nil, nil, &rest); st != http.StatusOK ||
			rest.UserID != alice.ID || rest.Status != "offline" || rest.LastSeen != p.LastSeen {
			t.Fatalf("REST presence = %d %+v, want %+v", st, rest, p)
		}
		m := scrape(t, s)
		if m[`mqchat_presence_transitions_total{cause="keep-alive"}`] < 1 || m[`mqchat_presence_transitions_total{cause="will"}`] < 1 {
			t.Errorf("transition metrics: keep-alive %v, will %v", m[`mqchat_presence_transitions_total{cause="keep-alive"}`], m[`mqchat_presence_transitions_total{cause="will"}`])
		}
		if m["mqchat_presence_online_users"] != 1 || m["mqchat_presence_online_devices"] != 1 { // bob's subscriber
			t.Errorf("online users %v, devices %v; want 1, 1", m["mqchat_presence_online_users"], m["mqchat_presence_online_devices"])
		}
	})
}

// TestPresenceCleanDisconnect: a clean DISCONNECT of both devices makes
// the user offline after the grace period.
func TestPresenceCleanDisconnect(t *testing.T) {
	forEachProto(t, func(t *testing.T, proto int) {
		s := startServer(t, presenceConfig(300*time.Millisecond))
		alice, bob := s.register(t, "alice"), s.register(t, "bob")
		befriend(t, s, bob, alice)
		sub := connectDevice(t, s, proto, bob, "sub", 30)
		if rc := sub.subscribe("presence/" + alice.ID); rc != 1 {
			t.Fatalf("SUBACK = 0x%02x", rc)
		}
		phone := connectDevice(t, s, proto, alice, "phone", 30)
		wantPresence(t, nextLive(t, sub.box, alice.ID), "online", 1)
		laptop := connectDevice(t, s, proto, alice, "laptop", 30)
		wantPresence(t, nextLive(t, sub.box, alice.ID), "online", 2)

		phone.disconnect()
		wantPresence(t, nextLive(t, sub.box, alice.ID), "online", 1)
		laptop.disconnect()
		wantPresence(t, nextLive(t, sub.box, alice.ID), "offline", 0)
		waitMetric(t, s, `mqchat_presence_transitions_total{cause="disconnect"}`, 2)

		// A late subscriber gets the retained aggregate, not a raw will.
		late := connectDevice(t, s, proto, bob, "late", 30)
		late.subscribe("presence/" + alice.ID)
		wantPresence(t, nextPresence(t, late.box, alice.ID), "offline", 0)
	})
}

// TestPresenceTakeover: a device reconnecting with the same client id
// while its old connection is alive never shows offline, even with no
// grace period at all.
func TestPresenceTakeover(t *testing.T) {
	forEachProto(t, func(t *testing.T, proto int) {
		s := startServer(t, presenceConfig(0))
		alice, bob := s.register(t, "alice"), s.register(t, "bob")
		befriend(t, s, alice, bob)
		sub := connectDevice(t, s, proto, bob, "sub", 30)
		sub.subscribe("presence/" + alice.ID)

		connectDevice(t, s, proto, alice, "phone", 30)
		first := nextLive(t, sub.box, alice.ID)
		wantPresence(t, first, "online", 1)
		for range 3 {
			connectDevice(t, s, proto, alice, "phone", 30) // takes the session over
		}
		waitMetric(t, s, `mqchat_presence_transitions_total{cause="takeover"}`, 3)
		// The marker: the next aggregate bob sees is the one a second
		// device causes, so nothing was published in between.
		connectDevice(t, s, proto, alice, "laptop", 30)
		wantPresence(t, nextChange(t, sub.box, alice.ID, first), "online", 2)
	})
}

// TestPresenceReconnectWithinGrace: a device that drops and comes back
// within the grace period causes no presence message at all.
func TestPresenceReconnectWithinGrace(t *testing.T) {
	forEachProto(t, func(t *testing.T, proto int) {
		s := startServer(t, presenceConfig(10*time.Second))
		alice, bob := s.register(t, "alice"), s.register(t, "bob")
		befriend(t, s, alice, bob)
		sub := connectDevice(t, s, proto, bob, "sub", 30)
		sub.subscribe("presence/" + alice.ID)

		phone := connectDevice(t, s, proto, alice, "phone", 30)
		first := nextLive(t, sub.box, alice.ID)
		wantPresence(t, first, "online", 1)
		phone.kill()
		waitMetric(t, s, `mqchat_presence_transitions_total{cause="will"}`, 1) // the server saw it go
		phone = connectDevice(t, s, proto, alice, "phone", 30)
		phone.disconnect()
		waitMetric(t, s, `mqchat_presence_transitions_total{cause="disconnect"}`, 1)
		connectDevice(t, s, proto, alice, "phone", 30)

		// The marker: a second device; its aggregate is the next change.
		connectDevice(t, s, proto, alice, "laptop", 30)
		wantPresence(t, nextChange(t, sub.box, alice.ID, first), "online", 2)
	})
}

// TestPresenceVisibility: only the user itself and users sharing a 1:1
// chat or a group may see a user's presence, over MQTT and REST.
func TestPresenceVisibility(t *testing.T) {
	forEachProto(t, func(t *testing.T, proto int) {
		s := startServer(t, nil)
		alice, carol, dave := s.register(t, "alice"), s.register(t, "carol"), s.register(t, "dave")
		connectDevice(t, s, proto, alice, "phone", 30)

		stranger := connectDevice(t, s, proto, carol, "phone", 30)
		for _, f := range []string{"presence/" + alice.ID, "presence/+", "presence/#"} {
			if rc := stranger.subscribe(f); rc != refused(proto) {
				t.Errorf("stranger SUBACK for %s = 0x%02x, want 0x%02x", f, rc, refused(proto))
			}
		}
		if st := s.call(t, "GET", "/v1/presence/"+alice.ID, carol.Token, nil, nil, nil); st != http.StatusForbidden {
			t.Errorf("stranger GET /v1/presence/{alice} = %d, want 403", st)
		}

		// dave shares a group with alice, no 1:1 chat.
		if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "g", "members": []string{dave.ID}}, nil, nil); st != http.StatusCreated {
			t.Fatalf("create group: %d", st)
		}
		member := connectDevice(t, s, proto, dave, "phone", 30)
		if rc := member.subscribe("presence/" + alice.ID); rc != 1 {
			t.Fatalf("group member SUBACK = 0x%02x, want 1", rc)
		}
		waitPresence(t, member.box, alice.ID, "online", 1)
		self := connectDevice(t, s, proto, alice, "tablet", 30)
		if rc := self.subscribe("presence/" + alice.ID); rc != 1 {
			t.Fatalf("own presence SUBACK = 0x%02x, want 1", rc)
		}
		waitPresence(t, member.box, alice.ID, "online", 2)

		var many struct {
			Presence []presenceMsg `json:"presence"`
		}
		if st := s.call(t, "GET", "/v1/presence?ids="+alice.ID+","+carol.ID+","+dave.ID, dave.Token, nil, nil, &many); st != http.StatusOK {
			t.Fatalf("GET /v1/presence?ids= = %d", st)
		}
		if len(many.Presence) != 2 || many.Presence[0].UserID != alice.ID || many.Presence[0].Status != "online" ||
			many.Presence[0].Devices != 2 || many.Presence[1].UserID != dave.ID {
			t.Fatalf("batch presence = %+v, want alice online with 2 devices and dave (carol left out)", many.Presence)
		}
		if st := s.call(t, "GET", "/v1/presence?ids="+alice.ID, carol.Token, nil, nil, &many); st != http.StatusOK || len(many.Presence) != 0 {
			t.Fatalf("stranger batch presence = %d %+v, want nothing", st, many.Presence)
		}
	})
}

// TestPresenceAfterRestart: a retained "online" from before a restart turns
// offline after the grace period when no presenceDevice of the user comes back.
func TestPresenceAfterRestart(t *testing.T) {
	forEachProto(t, func(t *testing.T, proto int) {
		cfg := testConfig(t)
		cfg.Presence.Grace = 300 * time.Millisecond
		s1, stop1 := startManual(t, cfg)
		alice, bob := s1.register(t, "alice"), s1.register(t, "bob")
		befriend(t, s1, alice, bob)
		connectDevice(t, s1, proto, alice, "phone", 30)
		sub := connectDevice(t, s1, proto, bob, "sub", 30)
		sub.subscribe("presence/" + alice.ID)
		waitPresence(t, sub.box, alice.ID, "online", 1) // retained or live
		stop1()

		s2, _ := startManual(t, cfg)
		sub = connectDevice(t, s2, proto, bob, "sub", 30)
		sub.subscribe("presence/" + alice.ID)
		// The retained "online" from before comes first unless the grace
		// period has already passed.
		wantPresence(t, waitPresence(t, sub.box, alice.ID, "offline", 0), "offline", 0)
		var rest presenceMsg
		if st := s2.call(t, "GET", "/v1/presence/"+alice.ID, bob.Token, nil, nil, &rest); st != http.StatusOK || rest.Status != "offline" {
			t.Fatalf("REST presence after restart = %d %+v", st, rest)
		}
	})
}
