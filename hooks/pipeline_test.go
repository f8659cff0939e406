package hooks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/mqtttest"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// gatedSender holds every send until the test releases its cmid, so the
// test decides in which order the sends' commits complete.
type gatedSender struct {
	mu     sync.Mutex
	queued []string
	gates  map[string]chan struct{}
	wake   chan struct{}
}

func newGatedSender() *gatedSender {
	return &gatedSender{gates: map[string]chan struct{}{}, wake: make(chan struct{}, 64)}
}

func (g *gatedSender) QueuePayload(_ context.Context, _ string, payload []byte) (chat.Envelope, func() (chat.Result, error), error) {
	var env chat.Envelope
	if err := json.Unmarshal(payload, &env); err != nil {
		return env, nil, err
	}
	gate := make(chan struct{})
	g.mu.Lock()
	g.queued = append(g.queued, env.CMID)
	g.gates[env.CMID] = gate
	g.mu.Unlock()
	g.wake <- struct{}{}
	return env, func() (chat.Result, error) {
		<-gate
		return chat.Result{Message: store.Message{CMID: env.CMID}}, nil
	}, nil
}

func (g *gatedSender) release(cmid string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gates[cmid])
}

func (g *gatedSender) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queued)
}

// waitQueued waits until n sends have been queued.
func (g *gatedSender) waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for g.count() < n {
		select {
		case <-g.wake:
		case <-deadline:
			t.Fatalf("%d sends queued, want %d", g.count(), n)
		}
	}
}

// TestSendQueueAnswersInPublishOrder: sends whose commits complete in the
// reverse of their publish order are still acknowledged in publish order,
// over MQTT 3.1.1 and 5, and a connection with window sends waiting is not
// read until one is answered.
func TestSendQueueAnswersInPublishOrder(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run("v"+strconv.Itoa(int(version)), func(t *testing.T) {
			const window = 3
			g, conn, r := dialGated(t, window)
			var buf bytes.Buffer
			mqtttest.AppendConnect(t, &buf, version, "alice/phone", "alice", "")
			const n = 2 * window
			for i := 1; i <= n; i++ {
				mqtttest.AppendPublish(t, &buf, version, uint16(i), "users/alice/send",
					[]byte(`{"to":"user:bob","cmid":"c`+strconv.Itoa(i)+`","type":"text","body":"hi"}`))
			}
			if _, err := conn.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			if typ, _ := readPacket(t, r); typ != packets.Connack {
				t.Fatalf("first packet type %d, want CONNACK", typ)
			}

			// The window fills and the rest stays unread in the socket.
			g.waitQueued(t, window)
			time.Sleep(100 * time.Millisecond) // room for a wrong server to read on
			if c := g.count(); c != window {
				t.Fatalf("%d sends queued with %d unanswered, want the window of %d", c, window, window)
			}
			// Commits complete last first: no PUBACK may leave before the
			// first send's, then all of the window's leave in order.
			for i := window; i >= 2; i-- {
				g.release("c" + strconv.Itoa(i))
			}
			g.release("c1")
			for i := 1; i <= window; i++ {
				expectPuback(t, r, uint16(i))
			}
			g.waitQueued(t, n)
			for i := n; i > window; i-- {
				g.release("c" + strconv.Itoa(i))
			}
			for i := window + 1; i <= n; i++ {
				expectPuback(t, r, uint16(i))
			}
		})
	}
}

// dialGated starts a broker whose Chat hook sends through a gatedSender
// (window 0 = the hook's default) and dials it; nothing is written yet.
func dialGated(t *testing.T, window int) (*gatedSender, net.Conn, *bufio.Reader) {
	t.Helper()
	g := newGatedSender()
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	if err := srv.AddHook(new(mqtttest.AllowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddHook(NewChat(ChatOptions{Sender: g, Events: NewOutbox(srv, nil, nil), SendWindow: window}), nil); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", mqtttest.ServeTCP(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	return g, conn, bufio.NewReader(conn)
}

func expectPuback(t *testing.T, r *bufio.Reader, id uint16) {
	t.Helper()
	typ, body := readPacket(t, r)
	if typ != packets.Puback || len(body) < 2 {
		t.Fatalf("packet type %d, want PUBACK %d", typ, id)
	}
	if got := binary.BigEndian.Uint16(body); got != id {
		t.Fatalf("PUBACK %d arrived when %d was due", got, id)
	}
	if len(body) > 2 && body[2] != 0 {
		t.Fatalf("PUBACK %d reason 0x%02x", id, body[2])
	}
}

func readPacket(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	typ, body, err := mqtttest.ReadPacket(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, body
}

// TestRequestPubackWaitsForEarlierSends: a publish the hook answers at
// once (here a typing notice it refuses) while an earlier send waits for
// its commit gets its PUBACK after that send's, with its reason code on
// MQTT 5.
func TestRequestPubackWaitsForEarlierSends(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run("v"+strconv.Itoa(int(version)), func(t *testing.T) {
			g, conn, r := dialGated(t, 0)
			var buf bytes.Buffer
			mqtttest.AppendConnect(t, &buf, version, "alice/phone", "alice", "")
			send := func(id uint16, topic, payload string) {
				mqtttest.AppendPublish(t, &buf, version, id, topic, []byte(payload))
			}
			send(1, "users/alice/send", `{"to":"user:bob","cmid":"c1","type":"text","body":"hi"}`)
			send(2, "users/alice/typing", `{"chat":"d:alice:bob"}`) // no typing handler: refused at once
			send(3, "users/alice/send", `{"to":"user:bob","cmid":"c3","type":"text","body":"hi"}`)
			if _, err := conn.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			if typ, _ := readPacket(t, r); typ != packets.Connack {
				t.Fatalf("first packet type %d, want CONNACK", typ)
			}
			g.waitQueued(t, 2) // c3 queued: the typing notice was handled before it
			g.release("c3")
			g.release("c1")
			expectPuback(t, r, 1)
			typ, body := readPacket(t, r)
			if typ != packets.Puback || binary.BigEndian.Uint16(body) != 2 {
				t.Fatalf("packet type %d %x, want the typing notice's PUBACK 2", typ, body)
			}
			if version == 5 && (len(body) < 3 || body[2] != packets.ErrNotAuthorized.Code) {
				t.Fatalf("typing PUBACK %x, want reason 0x%02x", body, packets.ErrNotAuthorized.Code)
			}
			expectPuback(t, r, 3)
		})
	}
}
