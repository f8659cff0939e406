package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Options say where chatd is and who connects.
type Options struct {
	// MQTTAddr is chatd's MQTT listener, host:port (TCP). WSURL, when
	// set, is used instead: MQTT over WebSocket, e.g.
	// ws://host:8083/mqtt.
	MQTTAddr string
	WSURL    string
	// HTTPBase is chatd's REST base URL (http://host:8080). It is needed
	// only to log in with Username and Password, or to learn the user id
	// of a Token given without UserID.
	HTTPBase string

	// Either Username and Password (the client logs in over REST, and
	// again when a reconnect finds its token refused: expired, or its
	// session ended), or Token, an access token, with the UserID it
	// belongs to. With RefreshToken too, a refused Token is replaced
	// through POST /v1/auth/refresh, and OnTokens is told the new pair
	// (refresh tokens are single use: store the new one). A client with
	// a Token alone cannot log in again: once the token expires its
	// reconnects fail (logged at warn) until Close.
	Username, Password string
	Token, UserID      string
	RefreshToken       string
	OnTokens           func(access, refresh string)

	// DeviceID is this installation's stable device id; the MQTT client
	// id is {user id}/{DeviceID}. Default: a random one per Dial.
	DeviceID string
	// ProtocolVersion is 5 (default) or 3 for MQTT 3.1.1.
	ProtocolVersion int
	// KeepAlive is the MQTT keep-alive; default 30s.
	KeepAlive time.Duration

	// Since is where the application's copy of each chat ends (chat → last
	// seq it has, as Client.Seen reported before): those chats resume from
	// there, missing messages fetched. Chats not in it start at Dial: only
	// messages stored after it are delivered.
	Since map[string]uint64

	// RequestTimeout bounds one attempt of a request (a send, a sync page,
	// a group operation) before it is tried again on the same or a new
	// connection; default 15s.
	RequestTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the pause between reconnect
	// attempts, which doubles from one to the other; defaults 100ms, 10s.
	ReconnectMin, ReconnectMax time.Duration

	// Dialer opens the TCP connection to MQTTAddr; default net.Dialer.
	// Load generators set it to pick source addresses.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// HTTPClient makes the REST calls; default http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives connection changes at info, problems at warn;
	// default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.MQTTAddr == "" && o.WSURL == "" {
		return errors.New("client: MQTTAddr or WSURL is required")
	}
	switch o.ProtocolVersion {
	case 0:
		o.ProtocolVersion = 5
	case 3, 4, 5:
	default:
		return errors.New("client: ProtocolVersion must be 5 or 3")
	}
	if o.Token == "" && o.RefreshToken == "" && (o.Username == "" || o.Password == "") {
		return errors.New("client: Username and Password, or Token (or RefreshToken), are required")
	}
	if (o.Token == "" || o.UserID == "" || o.RefreshToken != "") && o.HTTPBase == "" {
		return errors.New("client: HTTPBase is required to log in, refresh tokens or learn the token's user id")
	}
	if o.DeviceID == "" {
		o.DeviceID = "go-" + randomID(6)
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 30 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(10*time.Second, o.ReconnectMin)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// randomID is n random bytes in hex: cmids, request ids, device ids.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
