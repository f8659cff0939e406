package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// rawV5 is an MQTT 5 client driven packet by packet, so a test can pick
// its packet identifiers and hold back acknowledgements.
type rawV5 struct {
	t    *testing.T
	conn net.Conn
	// held keeps packets read while waiting for another: the server may
	// send an error event before or after the SUBACK it goes with.
	held []*packets.ControlPacket
}

func rawConnectV5(t *testing.T, s *server, a account, device string, cleanStart bool) (*rawV5, *packets.Connack) {
	t.Helper()
	r := &rawV5{t: t, conn: tcpConn(t, s.addrs.MQTT)}
	expiry := uint32(300)
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.KeepAlive, c.CleanStart = "MQTT", 5, 30, cleanStart
	c.ClientID = a.ID + "/" + device
	c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = a.ID, true, []byte(a.Token), true
	c.Properties = &packets.Properties{SessionExpiryInterval: &expiry}
	r.write(cp)
	ack := r.read("CONNACK", func(p *packets.ControlPacket) bool { return p.Type == packets.CONNACK }).Content.(*packets.Connack)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason 0x%02x", ack.ReasonCode)
	}
	return r, ack
}

func (r *rawV5) write(cp *packets.ControlPacket) {
	r.t.Helper()
	if _, err := cp.WriteTo(r.conn); err != nil {
		r.t.Fatalf("write %s: %v", cp.PacketType(), err)
	}
}

// read returns the first packet matching want, held or next to arrive,
// holding the others for later reads.
func (r *rawV5) read(what string, want func(*packets.ControlPacket) bool) *packets.ControlPacket {
	r.t.Helper()
	for i, cp := range r.held {
		if want(cp) {
			r.held = append(r.held[:i], r.held[i+1:]...)
			return cp
		}
	}
	if err := r.conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		r.t.Fatal(err)
	}
	for {
		cp, err := packets.ReadPacket(r.conn)
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		if want(cp) {
			return cp
		}
		if len(r.held) < 1024 {
			r.held = append(r.held, cp)
		}
	}
}

func (r *rawV5) subscribe(id uint16, filter string) byte {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.SUBSCRIBE)
	sub := cp.Content.(*packets.Subscribe)
	sub.PacketID = id
	sub.Subscriptions = []packets.SubOptions{{Topic: filter, QoS: 1}}
	r.write(cp)
	ack := r.read("SUBACK", func(p *packets.ControlPacket) bool {
		return p.Type == packets.SUBACK && p.PacketID() == id
	}).Content.(*packets.Suback)
	return ack.Reasons[0]
}

func (r *rawV5) publish(id uint16, topic string, payload []byte) byte {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.PacketID, p.QoS, p.Topic, p.Payload = id, 1, topic, payload
	p.Properties = &packets.Properties{}
	r.write(cp)
	return r.read("PUBACK", func(p *packets.ControlPacket) bool {
		return p.Type == packets.PUBACK && p.PacketID() == id
	}).Content.(*packets.Puback).ReasonCode
}

func (r *rawV5) puback(id uint16) {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.PUBACK)
	cp.Content.(*packets.Puback).PacketID = id
	r.write(cp)
}

func isDelivery(cmid string) func(*packets.ControlPacket) bool {
	return func(p *packets.ControlPacket) bool {
		return p.Type == packets.PUBLISH && strings.Contains(string(p.Content.(*packets.Publish).Payload), `"cmid":"`+cmid+`"`)
	}
}

// deliveredBy reports whether r is a receipt of uid's delivered cursor.
func deliveredBy(uid string) func(received) bool {
	return func(r received) bool {
		var ev struct {
			Type      string `json:"type"`
			User      string `json:"user"`
			Delivered uint64 `json:"delivered_seq"`
		}
		return json.Unmarshal(r.Payload, &ev) == nil && ev.Type == "receipt" && ev.User == uid && ev.Delivered > 0
	}
}

// TestPacketIDSpacesAreIndependent: the client's packet identifiers and
// the server's are separate spaces (MQTT 5 §2.2.1). A device that reuses,
// for its own SUBSCRIBE or QoS 1 PUBLISH, the identifier of an inbox
// delivery it has not acknowledged yet must neither be refused nor make
// the server forget that delivery or count it as delivered.
func TestPacketIDSpacesAreIndependent(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.subscribe(t, "users/"+alice.ID+"/events", "users/"+alice.ID+"/inbox")

	b, _ := rawConnectV5(t, s, bob, "phone", true)
	if rc := b.subscribe(1, "users/"+bob.ID+"/inbox"); rc != 1 {
		t.Fatalf("SUBACK 0x%02x", rc)
	}
	a.send(t, bob.ID, "m1", "hello")
	id := b.read("the delivery", isDelivery("m1")).PacketID()

	if rc := b.subscribe(id, "users/"+bob.ID+"/events"); rc != 1 {
		t.Fatalf("SUBSCRIBE reusing the delivery's id %d: SUBACK 0x%02x, want 0x01", id, rc)
	}
	chat := directChat(alice.ID, bob.ID)
	if rc := b.publish(id, "users/"+bob.ID+"/typing", []byte(`{"chat":"`+chat+`"}`)); rc != 0 {
		t.Fatalf("typing request reusing id %d: PUBACK 0x%02x", id, rc)
	}
	// (To carol: a send to alice would move bob's own cursors in their chat.)
	if rc := b.publish(id, "users/"+bob.ID+"/send", envelope(carol.ID, "r1", "hi")); rc != 0 {
		t.Fatalf("send reusing id %d: PUBACK 0x%02x", id, rc)
	}
	// Bob acknowledged none of it: no delivered receipt of his may reach
	// alice. Receipts flush every 250 ms; two intervals without one is the
	// check.
	time.Sleep(600 * time.Millisecond)
	for len(a.box) > 0 {
		if r := <-a.box; deliveredBy(bob.ID)(r) {
			t.Fatalf("delivered receipt for a delivery bob never acknowledged: %s", r.Payload)
		}
	}

	// The delivery is still in flight: after a reconnect it comes again,
	// and only bob's acknowledgement of it makes a delivered receipt.
	_ = b.conn.Close()
	b2, ack := rawConnectV5(t, s, bob, "phone", false)
	if !ack.SessionPresent {
		t.Fatal("session not kept")
	}
	again := b2.read("the delivery, resent", isDelivery("m1"))
	b2.puback(again.PacketID())
	a.box.next(t, "bob's delivered receipt", deliveredBy(bob.ID))
}
