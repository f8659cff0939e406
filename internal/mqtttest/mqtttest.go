// Package mqtttest holds what tests need around a real mochi broker: a hook
// that admits everyone, a loopback listener, and a reader of raw MQTT
// packets for tests that drive a connection byte by byte.
package mqtttest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// AllowAll behaves like mochi's auth.AllowHook, which is not imported
// because its package pulls in a YAML module this one does not otherwise
// need.
type AllowAll struct{ mqtt.HookBase }

func (*AllowAll) ID() string { return "allow-all" }

func (*AllowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*AllowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*AllowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// ServeTCP serves srv on a loopback TCP port for the rest of t and returns
// its address. A real socket, not net.Pipe: a pipe has no buffer, so
// mochi's writes and a client's acknowledgements can block each other.
func ServeTCP(t testing.TB, srv *mqtt.Server) string {
	t.Helper()
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return l.Address()
}

// ReadPacket reads one MQTT packet of either protocol version and returns
// its type (packets.Connack, packets.Puback, …) and the bytes after its
// fixed header.
func ReadPacket(r *bufio.Reader) (byte, []byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	size := 0
	for shift := 0; ; shift += 7 {
		if shift > 21 {
			return 0, nil, fmt.Errorf("remaining length longer than 4 bytes")
		}
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		size |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return first >> 4, body, nil
}

// AppendConnect appends a clean-session CONNECT of the given protocol
// version (4 = 3.1.1, 5) to buf; an empty password is left out.
func AppendConnect(t testing.TB, buf *bytes.Buffer, version byte, clientID, username, password string) {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: clientID, UsernameFlag: true, Username: []byte(username)}}
	if password != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(password)
	}
	if err := pk.ConnectEncode(buf); err != nil {
		t.Fatal(err)
	}
}

// AppendPublish appends a QoS 1 PUBLISH of the given protocol version to
// buf.
func AppendPublish(t testing.TB, buf *bytes.Buffer, version byte, id uint16, topic string, payload []byte) {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: version,
		TopicName: topic, PacketID: id, Payload: payload}
	if err := pk.PublishEncode(buf); err != nil {
		t.Fatal(err)
	}
}
