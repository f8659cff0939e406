package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
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
