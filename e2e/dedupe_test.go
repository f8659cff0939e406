package e2e

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rawV3 speaks MQTT 3.1.1 by hand, to send what client libraries never send
// on purpose: a QoS 1 PUBLISH retransmitted with the DUP flag.
type rawV3 struct {
	t    *testing.T
	conn net.Conn
}

func dialRawV3(t *testing.T, addr string, a account, device string) *rawV3 {
	t.Helper()
	r := &rawV3{t: t, conn: tcpConn(t, addr)}
	t.Cleanup(func() { _ = r.conn.Close() })
	r.connect(a, device, 30)
	return r
}

// connect sends a clean-session CONNECT for a's device and checks the
// CONNACK.
func (r *rawV3) connect(a account, device string, keepalive uint16) {
	r.t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepalive,
			ClientIdentifier: a.ID + "/" + device,
			UsernameFlag:     true, Username: []byte(a.ID),
			PasswordFlag: true, Password: []byte(a.Token),
		},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		r.t.Fatal(err)
	}
	r.write(buf.Bytes())
	if ack := r.read(4); ack[0] != 0x20 || ack[3] != 0 {
		r.t.Fatalf("CONNACK % x", ack)
	}
}

func (r *rawV3) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawV3) read(n int) []byte {
	r.t.Helper()
	b := make([]byte, n)
	_ = r.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(r.conn, b); err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return b
}

func (r *rawV3) publish(topic string, id uint16, dup bool, payload []byte) {
	r.t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1, Dup: dup},
		ProtocolVersion: 4, TopicName: topic, PacketID: id, Payload: payload,
	}
	var buf bytes.Buffer
	if err := pk.PublishEncode(&buf); err != nil {
		r.t.Fatal(err)
	}
	r.write(buf.Bytes())
}

func (r *rawV3) puback(id uint16) {
	r.t.Helper()
	if ack := r.read(4); ack[0] != 0x40 || uint16(ack[2])<<8|uint16(ack[3]) != id {
		r.t.Fatalf("PUBACK % x, want id %d", ack, id)
	}
}

// TestRetriedSendIsStoredAndDeliveredOnce: a send retried with the same cmid
// — as a QoS 1 DUP retransmission, after a reconnect, from another client
// version, or over HTTP — is stored and delivered once and keeps its seq.
func TestRetriedSendIsStoredAndDeliveredOnce(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	events := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "watcher")
	events.subscribe(t, "users/"+alice.ID+"/events")
	bobDev := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobDev.subscribe(t, "users/"+bob.ID+"/inbox")
	send := "users/" + alice.ID + "/send"
	payload := envelope(bob.ID, "once", "exactly once")

	raw := dialRawV3(t, s.addrs.MQTT, alice, "raw")
	raw.publish(send, 1, false, payload)
	raw.puback(1)
	raw.publish(send, 1, true, payload) // DUP retransmission
	raw.puback(1)

	// The connection drops before the PUBACK; the retry comes after a reconnect.
	raw2 := dialRawV3(t, s.addrs.MQTT, alice, "raw2")
	raw2.publish(send, 9, false, envelope(bob.ID, "lost-ack", "second"))
	_ = raw2.conn.Close()
	raw3 := dialRawV3(t, s.addrs.MQTT, alice, "raw2")
	raw3.publish(send, 9, true, envelope(bob.ID, "lost-ack", "second"))
	raw3.puback(9)

	v5 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "v5")
	v5.send(t, bob.ID, "once", "exactly once")
	var viaHTTP struct {
		Seq uint64 `json:"seq"`
	}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/messages", alice.Token, map[string]any{"body": "exactly once"}, map[string]string{"Idempotency-Key": "once"}, &viaHTTP); st != 201 || viaHTTP.Seq != 1 {
		t.Fatalf("HTTP retry: status %d seq %d, want 201 seq 1", st, viaHTTP.Seq)
	}
	v5.send(t, bob.ID, "marker", "after the retries")

	// Bob sees once, lost-ack, marker: nothing twice. The chat's writer
	// publishes in seq order, so a duplicate would arrive before the marker.
	for i, want := range []string{"once", "lost-ack", "marker"} {
		m := bobDev.box.next(t, "bob inbox", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
		if m.CMID != want || m.Seq != uint64(i+1) {
			t.Fatalf("bob message %d: %s seq %d, want %s seq %d", i+1, m.CMID, m.Seq, want, i+1)
		}
	}
	// Each retry that found the message already stored told the sender its
	// seq. (Whether the lost-ack publish was stored before its connection
	// was taken over is a race, so only the "once" retries are counted.)
	for dups := 0; dups < 2; {
		ev := events.box.next(t, "sent event", onEvent(alice.ID, "sent")).event(t)
		if ev.Type != "sent" || !ev.Duplicate {
			t.Fatalf("unexpected event %+v", ev)
		}
		if want := map[string]uint64{"once": 1, "lost-ack": 2}[ev.CMID]; ev.Seq != want || ev.Chat != chat {
			t.Fatalf("sent event %+v, want seq %d", ev, want)
		}
		if ev.CMID == "once" {
			dups++
		}
	}
	page := s.history(t, bob, chat, "")
	if len(page.Messages) != 3 {
		t.Fatalf("history holds %d messages, want 3: %+v", len(page.Messages), page.Messages)
	}
}
