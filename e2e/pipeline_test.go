package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/mqtttest"
)

// An MQTT 5 client may have many sends in flight; the server stores them in
// publish order, so their seqs follow that order and none is lost.
func TestPipelinedSendsKeepPublishOrder(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	sender := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	recipient := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	recipient.subscribe(t, "users/"+bob.ID+"/inbox")

	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for i := range n {
		// AsyncSend returns once the publish is written, without waiting for
		// its PUBACK, so up to the server's receive maximum are in flight.
		_, err := sender.c.PublishWithOptions(ctx, &paho.Publish{
			Topic: "users/" + alice.ID + "/send", QoS: 1, Payload: envelope(bob.ID, fmt.Sprintf("m%d", i), "hi"),
		}, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// A last send waited for normally: its PUBACK follows all the others.
	sender.send(t, bob.ID, "last", "bye")

	for i := range n + 1 {
		r := recipient.box.next(t, fmt.Sprintf("message %d", i), onTopic("users/"+bob.ID+"/inbox"))
		var m inboxMsg
		if err := json.Unmarshal(r.Payload, &m); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("m%d", i)
		if i == n {
			want = "last"
		}
		if m.CMID != want || m.Seq != uint64(i+1) {
			t.Fatalf("delivery %d: cmid %s seq %d, want cmid %s seq %d", i, m.CMID, m.Seq, want, i+1)
		}
	}
}

// TestPubacksFollowPublishOrder: a client of either version that keeps
// more sends in flight than the server's receive maximum, spread over
// chats that different writers commit, gets every PUBACK, in the order of
// its PUBLISHes ([MQTT-4.6.0-2]), and is neither refused nor
// disconnected: past the window the server stops reading instead.
func TestPubacksFollowPublishOrder(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MQTT.ReceiveMaximum = 32 })
	alice := s.register(t, "alice")
	var peers []account
	for i := range 6 {
		peers = append(peers, s.register(t, fmt.Sprintf("peer%d", i)))
	}
	for _, tc := range []struct {
		name    string
		version byte
	}{{"v3.1.1", 4}, {"v5", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tcpConn(t, s.addrs.MQTT)
			defer conn.Close()
			var buf bytes.Buffer
			mqtttest.AppendConnect(t, &buf, tc.version, alice.ID+"/pipe"+tc.name, alice.ID, alice.Token)
			const n = 200 // several times the window of 32
			for i := range n {
				mqtttest.AppendPublish(t, &buf, tc.version, uint16(i+1), "users/"+alice.ID+"/send",
					envelope(peers[i%len(peers)].ID, fmt.Sprintf("%s-%d", tc.name, i), "hi"))
			}
			// All at once: the server reads what its window admits and
			// leaves the rest in the socket until PUBACKs free room.
			go func() { _, _ = conn.Write(buf.Bytes()) }()

			r := bufio.NewReader(conn)
			if err := conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
				t.Fatal(err)
			}
			next := uint16(1)
			for next <= n {
				typ, body, err := mqtttest.ReadPacket(r)
				if err != nil {
					t.Fatalf("after %d PUBACKs: %v", next-1, err)
				}
				switch typ {
				case packets.Connack:
					if rc := body[1]; rc != 0 {
						t.Fatalf("CONNACK code 0x%02x", rc)
					}
				case packets.Puback:
					id := binary.BigEndian.Uint16(body)
					if id != next {
						t.Fatalf("PUBACK for publish %d arrived when %d was due", id, next)
					}
					if len(body) > 2 && body[2] != 0 {
						t.Fatalf("PUBACK %d reason 0x%02x", id, body[2])
					}
					next++
				case packets.Disconnect:
					t.Fatalf("disconnected after %d PUBACKs: %x", next-1, body)
				}
			}
		})
	}
}
