package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	paho3packets "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/mqchat/mqchat/internal/config"
)

// Per-client limits: topic aliases, subscriptions, connections and group
// changes. Each refusal has its protocol's code, an error event for users,
// a count in mqchat_limit_refusals_total, and leaves the connection (where
// the protocol keeps it) and every other user alone.

func refusals(t *testing.T, s *server, limit string) float64 {
	t.Helper()
	return scrape(t, s)[`mqchat_limit_refusals_total{limit="`+limit+`"}`]
}

// errorEvent waits for the next error event on a's events topic.
func errorEvent(t *testing.T, box mailbox, a account) event {
	t.Helper()
	topic := "users/" + a.ID + "/events"
	return box.next(t, "error event", func(r received) bool {
		return r.Topic == topic && r.event(t).Type == "error"
	}).event(t)
}

func (r *rawV5) publishAlias(id uint16, topic string, alias uint16, payload []byte) {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.PacketID, p.QoS, p.Topic, p.Payload = id, 1, topic, payload
	p.Properties = &packets.Properties{TopicAlias: &alias}
	r.write(cp)
}

func (r *rawV5) disconnected() byte {
	r.t.Helper()
	return r.read("DISCONNECT", func(p *packets.ControlPacket) bool {
		return p.Type == packets.DISCONNECT
	}).Content.(*packets.Disconnect).ReasonCode
}

func (r *rawV5) unsubscribe(id uint16, filters ...string) []byte {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.UNSUBSCRIBE)
	u := cp.Content.(*packets.Unsubscribe)
	u.PacketID, u.Topics = id, filters
	r.write(cp)
	return r.read("UNSUBACK", func(p *packets.ControlPacket) bool {
		return p.Type == packets.UNSUBACK && p.PacketID() == id
	}).Content.(*packets.Unsuback).Reasons
}

// TestTopicAliasLimits: the Topic Alias Maximum is announced in CONNACK and
// aliases up to it work; an alias above it gets DISCONNECT 0x94 and an
// aliased topic longer than mqtt.max_topic_bytes DISCONNECT 0x97. The
// user's other devices are told, and nobody else notices.
func TestTopicAliasLimits(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	watch := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "watch")
	watch.subscribe(t, "users/"+alice.ID+"/events")
	b := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	b.subscribe(t, "users/"+bob.ID+"/inbox")
	maxAlias := uint16(s.cfg.MQTT.TopicAliasMaximum)
	delivered := func(cmid string) {
		t.Helper()
		b.box.next(t, "delivery of "+cmid, func(r received) bool { return r.inbox(t).CMID == cmid })
	}

	t.Run("announced and usable", func(t *testing.T) {
		c, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), alice.ID, alice.Token, alice.ID+"/phone", nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
		if ack.Properties == nil || ack.Properties.TopicAliasMaximum == nil || *ack.Properties.TopicAliasMaximum != maxAlias {
			t.Fatalf("CONNACK topic alias maximum %+v, want %d", ack.Properties, maxAlias)
		}
		for i, topic := range []string{"users/" + alice.ID + "/send", ""} { // register, then use
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			resp, err := c.c.Publish(ctx, &paho.Publish{
				Topic: topic, QoS: 1, Payload: envelope(bob.ID, fmt.Sprint("alias", i), "x"),
				Properties: &paho.PublishProperties{TopicAlias: &maxAlias},
			})
			cancel()
			if err != nil || resp.ReasonCode != 0 {
				t.Fatalf("publish %d with alias %d: %v %+v", i, maxAlias, err, resp)
			}
			delivered(fmt.Sprint("alias", i))
		}
	})

	t.Run("above the maximum", func(t *testing.T) {
		before := refusals(t, s, "topic_alias")
		r, _ := rawConnectV5(t, s, alice, "raw1", true)
		r.publishAlias(1, "users/"+alice.ID+"/send", maxAlias+1, envelope(bob.ID, "over", "x"))
		if rc := r.disconnected(); rc != 0x94 {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x94", rc)
		}
		if ev := errorEvent(t, watch.box, alice); ev.Code != "invalid_payload" || ev.ReasonCode != 0x94 {
			t.Fatalf("error event %+v", ev)
		}
		waitMetric(t, s, `mqchat_limit_refusals_total{limit="topic_alias"}`, before+1)
	})

	t.Run("topic too long", func(t *testing.T) {
		before := refusals(t, s, "topic_bytes")
		long := "users/" + alice.ID + "/send/" + strings.Repeat("x", s.cfg.MQTT.MaxTopicBytes)
		r, _ := rawConnectV5(t, s, alice, "raw2", true)
		r.publishAlias(1, long, 1, envelope(bob.ID, "long", "x"))
		if rc := r.disconnected(); rc != 0x97 {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x97", rc)
		}
		if ev := errorEvent(t, watch.box, alice); ev.Code != "quota_exceeded" || ev.ReasonCode != 0x97 || ev.Message == "" {
			t.Fatalf("error event %+v", ev)
		}
		waitMetric(t, s, `mqchat_limit_refusals_total{limit="topic_bytes"}`, before+1)
	})

	// The user's other device and other users carry on.
	watch.send(t, bob.ID, "after", "still here")
	delivered("after")
}

// TestSubscriptionLimits: filters past mqtt.max_filters_per_subscribe in
// one SUBSCRIBE, past mqtt.max_subscriptions in a session, or longer than
// mqtt.max_topic_bytes get SUBACK 0x97 (MQTT 5) or 0x80 (3.1.1) while the
// others are granted, with an error event; re-subscribing a held filter is
// always granted, and other users keep their own allowance.
func TestSubscriptionLimits(t *testing.T) {
	const maxSubs, perSubscribe = 4, 3
	s := startServer(t, func(c *config.Config) {
		c.MQTT.MaxSubscriptions = maxSubs
		c.MQTT.MaxFiltersPerSubscribe = perSubscribe
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	resp := func(a account, name string) string { return "users/" + a.ID + "/responses/" + name }
	long := resp(alice, strings.Repeat("x", s.cfg.MQTT.MaxTopicBytes))

	t.Run("v5", func(t *testing.T) {
		a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "v5")
		a.subscribe(t, "users/"+alice.ID+"/events") // first, so the events below arrive

		before := refusals(t, s, "subscribe_filters")
		if got := a.subscribe(t, resp(alice, "a"), resp(alice, "b"), resp(alice, "c"), resp(alice, "d")); string(got) != "\x01\x01\x01\x97" {
			t.Fatalf("SUBACK %x, want 01 01 01 97", got)
		}
		if ev := errorEvent(t, a.box, alice); ev.Code != "quota_exceeded" || ev.ReasonCode != 0x97 || !strings.Contains(ev.Message, "SUBSCRIBE") {
			t.Fatalf("error event %+v", ev)
		}
		waitMetric(t, s, `mqchat_limit_refusals_total{limit="subscribe_filters"}`, before+1)

		// events, a, b, c: the session is full. A held filter is renewed, a
		// new one refused.
		before = refusals(t, s, "subscriptions")
		if got := a.subscribe(t, resp(alice, "a"), resp(alice, "e")); string(got) != "\x01\x97" {
			t.Fatalf("SUBACK %x, want 01 97", got)
		}
		if ev := errorEvent(t, a.box, alice); ev.ReasonCode != 0x97 || !strings.Contains(ev.Message, fmt.Sprint(maxSubs)) {
			t.Fatalf("error event %+v", ev)
		}
		waitMetric(t, s, `mqchat_limit_refusals_total{limit="subscriptions"}`, before+1)

		before = refusals(t, s, "topic_bytes")
		if got := a.subscribe(t, long); string(got) != "\x97" {
			t.Fatalf("SUBACK for a %d-byte filter %x, want 97", len(long), got)
		}
		if ev := errorEvent(t, a.box, alice); ev.ReasonCode != 0x97 || ev.Topic != "" {
			t.Fatalf("error event %+v (an oversized filter is not echoed)", ev)
		}
		waitMetric(t, s, `mqchat_limit_refusals_total{limit="topic_bytes"}`, before+1)

		// The connection carries on, and an unsubscribe makes room.
		a.send(t, bob.ID, "v5-still", "x")
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := a.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{resp(alice, "c")}}); err != nil {
			t.Fatal(err)
		}
		if got := a.subscribe(t, resp(alice, "e")); string(got) != "\x01" {
			t.Fatalf("SUBACK after unsubscribing %x, want 01", got)
		}
	})

	t.Run("v3", func(t *testing.T) {
		a := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "v3")
		if rc := a.subscribe(t, "users/"+alice.ID+"/events"); rc != 1 {
			t.Fatalf("SUBACK 0x%02x", rc)
		}
		subscribe := func(filters ...string) map[string]byte {
			t.Helper()
			m := make(map[string]byte, len(filters))
			for _, f := range filters {
				m[f] = 1
			}
			tok := a.c.SubscribeMultiple(m, nil)
			if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("subscribe %v: %v", filters, tok.Error())
			}
			return tok.(*paho3.SubscribeToken).Result()
		}
		count := func(res map[string]byte, rc byte) int {
			n := 0
			for _, c := range res {
				if c == rc {
					n++
				}
			}
			return n
		}
		// paho.mqtt.golang orders a multi-filter SUBSCRIBE as it likes, so
		// only the number refused is known.
		res := subscribe(resp(alice, "a"), resp(alice, "b"), resp(alice, "c"), resp(alice, "d"))
		if count(res, 0x80) != 1 || count(res, 1) != 3 {
			t.Fatalf("SUBACK %v, want three granted and one 0x80", res)
		}
		if ev := errorEvent(t, a.box, alice); ev.Code != "quota_exceeded" || ev.ReasonCode != 0x97 {
			t.Fatalf("error event %+v", ev)
		}
		var held string
		for f, rc := range res {
			if rc == 1 {
				held = f
			}
		}
		res = subscribe(held, resp(alice, "e"))
		if res[held] != 1 || res[resp(alice, "e")] != 0x80 {
			t.Fatalf("SUBACK %v, want %s granted and the new filter 0x80", res, held)
		}
		errorEvent(t, a.box, alice)
		if rc := a.subscribe(t, long); rc != 0x80 {
			t.Fatalf("SUBACK for a long filter 0x%02x, want 0x80", rc)
		}
		errorEvent(t, a.box, alice)
		a.send(t, bob.ID, "v3-still", "x")
	})

	// Bob's allowance is his own.
	b := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	if got := b.subscribe(t, "users/"+bob.ID+"/inbox", "users/"+bob.ID+"/events", resp(bob, "a")); string(got) != "\x01\x01\x01" {
		t.Fatalf("bob's SUBACK %x", got)
	}
	for _, cmid := range []string{"v5-still", "v3-still"} {
		if got := s.history(t, bob, directChat(alice.ID, bob.ID), "?limit=10"); !hasCMID(got, cmid) {
			t.Fatalf("%s not stored: %+v", cmid, got)
		}
	}
}

func hasCMID(p historyPage, cmid string) bool {
	for _, m := range p.Messages {
		if m.CMID == cmid {
			return true
		}
	}
	return false
}

// TestRestoredSessionTrimmed: a persistent session stored with more
// subscriptions than the limit allows (the limit was lowered) comes back
// with at most the limit, its own users/{me}/… filters first; the rest are
// counted, deleted from the session store (a further restart finds nothing
// to trim), and filters the ACL refused were never stored at all (else
// they would have been counted as dropped).
func TestRestoredSessionTrimmed(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.MaxSubscriptions, cfg.MQTT.MaxFiltersPerSubscribe = 50, 50
	s1, stop1 := startManual(t, cfg)
	alice, bob := s1.register(t, "alice"), s1.register(t, "bob")

	own := []string{"users/" + alice.ID + "/events", "users/" + alice.ID + "/inbox"}
	for i := 0; i < 30; i++ {
		own = append(own, fmt.Sprintf("users/%s/responses/f%02d", alice.ID, i))
	}
	presence := "presence/" + alice.ID // sorts before users/, yet is not kept first
	denied := "users/" + bob.ID + "/inbox"
	r, _ := rawConnectV5(t, s1, alice, "phone", false)
	for i, f := range append(append([]string{}, own...), presence) {
		if rc := r.subscribe(uint16(i+1), f); rc != 1 {
			t.Fatalf("SUBACK for %s 0x%02x", f, rc)
		}
	}
	if rc := r.subscribe(100, denied); rc != 0x87 {
		t.Fatalf("SUBACK for another user's inbox 0x%02x, want 0x87", rc)
	}
	stop1()

	const limit = 10
	cfg.MQTT.MaxSubscriptions, cfg.MQTT.MaxFiltersPerSubscribe = limit, limit
	s2, stop2 := startManual(t, cfg)
	if got, want := refusals(t, s2, "restored_subscriptions"), float64(len(own)+1-limit); got != want {
		t.Fatalf("restored_subscriptions = %v, want %v", got, want)
	}
	stop2()

	s3, _ := startManual(t, cfg)
	if got := refusals(t, s3, "restored_subscriptions"); got != 0 {
		t.Fatalf("restored_subscriptions after a second restart = %v, want 0: the trimmed filters came back", got)
	}
	r, ack := rawConnectV5(t, s3, alice, "phone", false)
	if !ack.SessionPresent {
		t.Fatal("session not restored")
	}
	// The session is full: a new filter is refused, and the refusal's
	// event arrives on the events filter the trim kept.
	if rc := r.subscribe(300, "users/"+alice.ID+"/responses/new0"); rc != 0x97 {
		t.Fatalf("SUBACK for a new filter 0x%02x, want 0x97", rc)
	}
	r.read("error event", func(p *packets.ControlPacket) bool {
		return p.Type == packets.PUBLISH && p.Content.(*packets.Publish).Topic == own[0]
	})
	// mochi's UNSUBACK says 0x00 for any filter with a node in its topic
	// tree, held or not, so the count shows in what fits after freeing
	// two places: exactly two new filters if the session held the limit.
	r.unsubscribe(301, own[0], own[1])
	for i, want := range []byte{1, 1, 0x97} {
		if rc := r.subscribe(uint16(302+i), fmt.Sprintf("users/%s/responses/new%d", alice.ID, i+1)); rc != want {
			t.Fatalf("SUBACK %d after freeing two places 0x%02x, want 0x%02x", i, rc, want)
		}
	}
}

// TestConnectionLimits: past limits.max_connections_per_user a CONNECT gets
// CONNACK 0x97 (MQTT 5) or 0x03 (3.1.1); a device reconnecting with its own
// client id takes its old place over; a place frees when a connection
// ends; connections racing each other never end up over the limit; and
// other users are unaffected.
func TestConnectionLimits(t *testing.T) {
	const max = 3
	s := startServer(t, func(c *config.Config) { c.Limits.MaxConnectionsPerUser = max })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	url := "tcp://" + s.addrs.MQTT

	d1 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "d1")
	d1.subscribe(t, "users/"+alice.ID+"/inbox")
	dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "d2")
	dialV3(t, url, alice, "d3")

	before := refusals(t, s, "user_connections")
	if rc, err := connectV5Code(t, s.addrs.MQTT, alice.ID, alice.Token, alice.ID+"/d4", nil); rc != 0x97 || err == nil {
		t.Fatalf("v5 CONNACK 0x%02x (%v), want 0x97", rc, err)
	}
	if rc, err := connectV3Code(t, url, alice.ID, alice.Token, alice.ID+"/d5", nil); rc != 0x03 || !errors.Is(err, paho3packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("3.1.1 CONNACK 0x%02x (%v), want 0x03", rc, err)
	}
	waitMetric(t, s, `mqchat_limit_refusals_total{limit="user_connections"}`, before+2)

	// A takeover keeps its place; the connections held are unaffected.
	if rc, err := connectV5Code(t, s.addrs.MQTT, alice.ID, alice.Token, alice.ID+"/d2", nil); rc != 0 {
		t.Fatalf("reconnect of d2: 0x%02x (%v)", rc, err)
	}
	if rc, _ := connectV5Code(t, s.addrs.MQTT, alice.ID, alice.Token, alice.ID+"/d4", nil); rc != 0x97 {
		t.Fatalf("after a takeover a fourth device got 0x%02x, want 0x97", rc)
	}
	bobDev := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobDev.send(t, alice.ID, "bob-1", "hi")
	d1.box.next(t, "bob's message", onTopic("users/"+alice.ID+"/inbox"))

	// A place frees when a connection ends.
	_ = d1.c.Disconnect(&paho.Disconnect{})
	eventually(t, "a place after d1 left", func() error {
		conn := tcpConn(t, s.addrs.MQTT)
		c, ack, err := connectV5(conn, alice.ID, alice.Token, alice.ID+"/d4", nil)
		if ack != nil && ack.ReasonCode == 0 {
			t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
			return nil
		}
		_ = conn.Close()
		return fmt.Errorf("CONNACK %+v: %v", ack, err)
	})

	t.Run("racing devices", func(t *testing.T) {
		carol := s.register(t, "carol")
		if n := raceConnect(t, s, carol, func(i int) string { return fmt.Sprint("r", i) }); n != max {
			t.Fatalf("%d of 12 racing devices accepted, want %d", n, max)
		}
	})

	t.Run("racing takeovers", func(t *testing.T) {
		dave := s.register(t, "dave")
		// Twelve CONNECTs with one client id: each replaces the one before,
		// so together they hold one place.
		if n := raceConnect(t, s, dave, func(int) string { return "same" }); n == 0 {
			t.Fatal("no racing takeover was accepted")
		}
		for i := 1; i < max; i++ {
			if rc, err := connectV5Code(t, s.addrs.MQTT, dave.ID, dave.Token, fmt.Sprintf("%s/other%d", dave.ID, i), nil); rc != 0 {
				t.Fatalf("device %d after the takeovers: 0x%02x (%v)", i, rc, err)
			}
		}
		if rc, _ := connectV5Code(t, s.addrs.MQTT, dave.ID, dave.Token, dave.ID+"/over", nil); rc != 0x97 {
			t.Fatalf("a device past the limit got 0x%02x, want 0x97", rc)
		}
	})
}

// raceConnect makes twelve MQTT 5 CONNECTs of a at once, with client ids
// a.ID/device(i), and returns how many were accepted. Accepted clients stay
// connected until the test ends.
func raceConnect(t *testing.T, s *server, a account, device func(int) string) int {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
	)
	start := make(chan struct{})
	for i := 0; i < 12; i++ {
		conn := tcpConn(t, s.addrs.MQTT)
		t.Cleanup(func() { _ = conn.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, ack, _ := connectV5(conn, a.ID, a.Token, a.ID+"/"+device(i), nil)
			if ack != nil && ack.ReasonCode == 0 {
				mu.Lock()
				accepted++
				mu.Unlock()
				t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
			}
		}()
	}
	close(start)
	wg.Wait()
	return accepted
}

// TestDeviceConnectRate: past limits.device_connects CONNECTs within the
// window, a device gets CONNACK 0x9F (MQTT 5) or 0x03 (3.1.1); the user's
// other devices and other users connect as usual.
func TestDeviceConnectRate(t *testing.T) {
	const n = 3
	s := startServer(t, func(c *config.Config) {
		c.Limits.DeviceConnects = n
		c.Limits.DeviceConnectsWindow = time.Hour // no refill during the test
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	url := "tcp://" + s.addrs.MQTT
	before := refusals(t, s, "device_connect_rate")
	for i := 0; i < n; i++ {
		if rc, err := connectV5Code(t, s.addrs.MQTT, alice.ID, alice.Token, alice.ID+"/phone", nil); rc != 0 {
			t.Fatalf("v5 connect %d: 0x%02x (%v)", i, rc, err)
		}
		if rc, err := connectV3Code(t, url, alice.ID, alice.Token, alice.ID+"/tablet", nil); rc != 0 {
			t.Fatalf("3.1.1 connect %d: 0x%02x (%v)", i, rc, err)
		}
	}
	if rc, err := connectV5Code(t, s.addrs.MQTT, alice.ID, alice.Token, alice.ID+"/phone", nil); rc != 0x9F || err == nil {
		t.Fatalf("v5 CONNACK 0x%02x (%v), want 0x9F", rc, err)
	}
	if rc, err := connectV3Code(t, url, alice.ID, alice.Token, alice.ID+"/tablet", nil); rc != 0x03 || !errors.Is(err, paho3packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("3.1.1 CONNACK 0x%02x (%v), want 0x03", rc, err)
	}
	waitMetric(t, s, `mqchat_limit_refusals_total{limit="device_connect_rate"}`, before+2)
	// Someone else cannot spend alice's allowance: a CONNECT with another
	// user's token is refused for the token before the rate is looked at,
	// so alice/laptop still has all of its own below.
	for i := 0; i < n; i++ {
		if rc, _ := connectV5Code(t, s.addrs.MQTT, alice.ID, bob.Token, alice.ID+"/laptop", nil); rc != 0x86 {
			t.Fatalf("a stranger's CONNECT got 0x%02x, want 0x86", rc)
		}
	}
	for _, a := range []account{alice, bob} {
		if rc, err := connectV5Code(t, s.addrs.MQTT, a.ID, a.Token, a.ID+"/laptop", nil); rc != 0 {
			t.Fatalf("%s/laptop: 0x%02x (%v)", a.Username, rc, err)
		}
	}
}

// TestGroupOpRateLimit: past limits.group_op_rate (burst
// limits.group_op_burst) a user's group changes are refused, REST and MQTT
// alike: 429 rate_limited with Retry-After, and over MQTT a group_op result
// with rate_limited and 0x96 (also in the v5 PUBACK). Reads are not
// limited and other users have their own allowance.
func TestGroupOpRateLimit(t *testing.T) {
	const burst = 3
	s := startServer(t, func(c *config.Config) {
		c.Limits.GroupOpRate = 1
		c.Limits.GroupOpBurst = burst
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "g", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	before := refusals(t, s, "group_op_rate")

	// exhaust renames over REST until one is refused; it reports that
	// refusal's Retry-After.
	exhaust := func() string {
		t.Helper()
		for i := 0; i < 4*burst; i++ {
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			res := rawHTTP(t, s, "PATCH", "/v1/groups/"+g.GroupID, map[string]string{"Authorization": "Bearer " + alice.Token}, `{"name":"n"}`)
			if res.status == http.StatusTooManyRequests {
				if err := json.Unmarshal(res.body, &e); err != nil || e.Error.Code != "rate_limited" {
					t.Fatalf("429 body %s", res.body)
				}
				return res.header.Get("Retry-After")
			}
			if res.status != http.StatusOK {
				t.Fatalf("rename: %d %s", res.status, res.body)
			}
		}
		t.Fatalf("%d renames in a row were all accepted", 4*burst)
		return ""
	}
	if ra := exhaust(); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, alice.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("a read while limited: %d", st)
	}

	for _, ver := range versions {
		t.Run(ver, func(t *testing.T) {
			d := dialDevice(t, s, ver, alice, "dev-"+ver)
			// The bucket refills a token a second: retry until the MQTT
			// request is the one that finds it empty.
			var ev reqEvent
			for i := 0; ; i++ {
				exhaust()
				opID := fmt.Sprintf("%s-%d", ver, i)
				rc := d.request(t, "groups", map[string]any{"op_id": opID, "op": "rename", "group_id": g.GroupID, "name": "m"})
				ev = d.event(t, "group_op")
				if ev.OpID != opID {
					t.Fatalf("group_op for %s, want %s", ev.OpID, opID)
				}
				if !ev.OK {
					d.wantRC(t, rc, 0x96)
					break
				}
				if i == 10 {
					t.Fatal("the MQTT request always found a token")
				}
			}
			if ev.Code != "rate_limited" || ev.ReasonCode != 0x96 || ev.Message == "" {
				t.Fatalf("group_op result %+v", ev)
			}
		})
	}
	waitMetric(t, s, `mqchat_limit_refusals_total{limit="group_op_rate"}`, before+3)

	// Bob's allowance is his own.
	if st := s.call(t, "POST", "/v1/groups", bob.Token, map[string]any{"name": "bob's"}, nil, nil); st != http.StatusCreated {
		t.Fatalf("bob's create: %d", st)
	}
}
