package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Options configures a Broker. Zero values for the limits mean mochi's
// default; the listeners other than TCP are off when their address is "".
type Options struct {
	TCPAddr string // e.g. ":1883"; required

	TLSAddr string // TLS listener when non-empty; needs TLSConfig or TLSCert and TLSKey
	TLSCert string // PEM certificate (chain) file
	TLSKey  string // PEM private key file
	// TLSConfig, when set, is used instead of TLSCert and TLSKey (e.g. one
	// whose certificate is reloaded while the listener runs).
	TLSConfig *tls.Config

	WSAddr string // WebSocket listener when non-empty
	WSPath string // the only path upgraded; "" means "/mqtt"
	// WSTLSConfig makes the WebSocket listener serve wss:// when set.
	WSTLSConfig *tls.Config
	// Origins decides which browser pages may open a WebSocket; nil
	// allows only pages from the host the request was sent to.
	Origins OriginChecker

	SessionDir string // Pebble session store directory; "" disables persistence

	ClientWritesPending int           // Capabilities.MaximumClientWritesPending
	MaxInflight         int           // Capabilities.MaximumInflight
	ReceiveMaximum      int           // Capabilities.ReceiveMaximum
	SessionExpiry       time.Duration // Capabilities.MaximumSessionExpiryInterval, rounded up to seconds
	MaxPacketSize       uint32        // Capabilities.MaximumPacketSize; 0 = no limit
	TopicAliasMaximum   int           // Capabilities.TopicAliasMaximum; 0 = mochi's default (65535)

	// Restored sessions are held to the limits live ones are (see
	// sessionStore.StoredSubscriptions): at most MaxSubscriptions filters
	// per session, none longer than MaxFilterBytes. 0 = no limit.
	MaxSubscriptions int
	MaxFilterBytes   int
	// KeepFirst picks the filters a session over the limit keeps first (a
	// user's own topics before others'); nil keeps the store's order.
	KeepFirst func(clientID, filter string) bool
	// Limits counts the filters dropped from restored sessions; nil = not counted.
	Limits LimitObserver

	// Outbound bounds each connection's outgoing queue in bytes and how
	// long it may stay stalled; zero fields take DefaultOutboundLimits.
	// The packet bound is ClientWritesPending.
	Outbound        OutboundLimits
	OutboundMetrics OutboundMetrics // nil records nothing

	Logger *slog.Logger // nil means slog.Default()
}

// OriginChecker decides whether a browser page may open a WebSocket: ok,
// or the reason it may not, for the log.
type OriginChecker interface {
	Check(r *http.Request) (ok bool, reason string)
}

// defaultWSPath is the conventional MQTT-over-WebSocket path.
const defaultWSPath = "/mqtt"

// validate checks the options that New cannot recover from later, so that a
// bad configuration fails before anything is bound or opened.
func (o *Options) validate() error {
	if o.TCPAddr == "" {
		return errors.New("TCPAddr is required")
	}
	if o.TLSAddr != "" && o.TLSConfig == nil && (o.TLSCert == "" || o.TLSKey == "") {
		return errors.New("TLSAddr is set but TLSCert or TLSKey is empty")
	}
	if o.WSAddr != "" && o.WSPath != "" && !strings.HasPrefix(o.WSPath, "/") {
		return fmt.Errorf("WSPath %q must start with /", o.WSPath)
	}
	if o.MaxSubscriptions < 0 || o.MaxFilterBytes < 0 {
		return fmt.Errorf("MaxSubscriptions %d and MaxFilterBytes %d must not be negative", o.MaxSubscriptions, o.MaxFilterBytes)
	}
	return nil
}

func (o *Options) outboundLimits() OutboundLimits {
	lim := o.Outbound
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultOutboundLimits.MaxBytes
	}
	if lim.StallTimeout <= 0 {
		lim.StallTimeout = DefaultOutboundLimits.StallTimeout
	}
	return lim
}

// capabilities starts from mochi's defaults so that anything we do not set
// (MaximumMessageExpiryInterval, QoS, shared subscriptions...) keeps mochi's
// behaviour, and rejects values that would silently wrap when narrowed to
// mochi's integer types.
func (o *Options) capabilities() (*mqtt.Capabilities, error) {
	caps := mqtt.NewDefaultServerCapabilities()

	switch {
	case o.ClientWritesPending < 0 || o.ClientWritesPending > math.MaxInt32:
		return nil, fmt.Errorf("ClientWritesPending %d out of range 0..%d", o.ClientWritesPending, math.MaxInt32)
	case o.ClientWritesPending > 0:
		caps.MaximumClientWritesPending = int32(o.ClientWritesPending)
	}

	switch {
	case o.MaxInflight < 0 || o.MaxInflight > math.MaxUint16:
		return nil, fmt.Errorf("MaxInflight %d out of range 0..%d", o.MaxInflight, math.MaxUint16)
	case o.MaxInflight > 0:
		caps.MaximumInflight = uint16(o.MaxInflight)
	}

	// A ReceiveMaximum of 0 would make mochi disconnect every client on its
	// first publish, so 0 keeps the default instead.
	switch {
	case o.ReceiveMaximum < 0 || o.ReceiveMaximum > math.MaxUint16:
		return nil, fmt.Errorf("ReceiveMaximum %d out of range 0..%d", o.ReceiveMaximum, math.MaxUint16)
	case o.ReceiveMaximum > 0:
		caps.ReceiveMaximum = uint16(o.ReceiveMaximum)
	}

	switch {
	case o.SessionExpiry < 0:
		return nil, fmt.Errorf("SessionExpiry %v is negative", o.SessionExpiry)
	case o.SessionExpiry > 0:
		// Round up: truncating 500ms to 0s would mean "expire immediately".
		secs := o.SessionExpiry / time.Second
		if o.SessionExpiry%time.Second != 0 {
			secs++
		}
		if secs > math.MaxUint32 {
			return nil, fmt.Errorf("SessionExpiry %v exceeds %d seconds", o.SessionExpiry, uint32(math.MaxUint32))
		}
		caps.MaximumSessionExpiryInterval = uint32(secs)
	}

	switch {
	case o.TopicAliasMaximum < 0 || o.TopicAliasMaximum > math.MaxUint16:
		return nil, fmt.Errorf("TopicAliasMaximum %d out of range 0..%d", o.TopicAliasMaximum, math.MaxUint16)
	case o.TopicAliasMaximum > 0:
		caps.TopicAliasMaximum = uint16(o.TopicAliasMaximum)
	}

	caps.MaximumPacketSize = o.MaxPacketSize
	return caps, nil
}
