package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// Bounds that come from outside chatd rather than taste.
const (
	// MQTT v5 carries session expiry as a uint32 of seconds.
	maxSessionExpiry = math.MaxUint32 * time.Second
	// MQTT carries keep-alive as a uint16 of seconds.
	maxKeepAlive = math.MaxUint16 * time.Second
	// The id layout leaves 10 bits for the node.
	maxNodeID = 1023
	// bcrypt rejects costs outside 4..31.
	minBcryptCost, maxBcryptCost = 4, 31
)

// Validate reports every problem in c, joined; each one names its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: invalid value for %q: %s", key, fmt.Sprintf(format, args...)))
	}
	between := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(key, "must be between %d and %d, got %d", lo, hi, v)
		}
	}
	addr := func(key, v string) {
		if err := checkHostPort(v); err != nil {
			bad(key, "%v", err)
		}
	}

	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	between("node_id", c.NodeID, 0, maxNodeID)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}

	m := c.MQTT
	addr("mqtt.addr", m.Addr)
	if m.WSAddr != "" {
		addr("mqtt.ws_addr", m.WSAddr)
	}
	if !strings.HasPrefix(m.WSPath, "/") {
		bad("mqtt.ws_path", "must start with \"/\", got %q", m.WSPath)
	}
	for _, o := range m.WSAllowedOrigins {
		if strings.TrimSpace(o) == "" {
			bad("mqtt.ws_allowed_origins", "must not contain empty entries")
			break
		}
	}
	if m.TLSAddr != "" {
		addr("mqtt.tls_addr", m.TLSAddr)
		if m.TLSCert == "" {
			bad("mqtt.tls_cert", "required when mqtt.tls_addr is set")
		}
		if m.TLSKey == "" {
			bad("mqtt.tls_key", "required when mqtt.tls_addr is set")
		}
	} else {
		// A certificate with no listener to use it is a half-done setup,
		// not something to ignore.
		if m.TLSCert != "" {
			bad("mqtt.tls_cert", "set but mqtt.tls_addr is empty")
		}
		if m.TLSKey != "" {
			bad("mqtt.tls_key", "set but mqtt.tls_addr is empty")
		}
	}
	between("mqtt.client_writes_pending", m.ClientWritesPending, 16, 65536)
	between("mqtt.max_inflight", m.MaxInflight, 1, math.MaxUint16)
	between("mqtt.receive_maximum", m.ReceiveMaximum, 1, math.MaxUint16)
	if m.SessionExpiry < 0 || m.SessionExpiry > maxSessionExpiry {
		bad("mqtt.session_expiry", "must be between 0s and %s, got %s", maxSessionExpiry, m.SessionExpiry)
	}
	if m.KeepAliveMax < 0 || m.KeepAliveMax > maxKeepAlive {
		bad("mqtt.keepalive_max", "must be between 0s and %s, got %s", maxKeepAlive, m.KeepAliveMax)
	}

	addr("http.addr", c.HTTP.Addr)
	if c.HTTP.PprofAddr != "" {
		addr("http.pprof_addr", c.HTTP.PprofAddr)
		if host, _, err := net.SplitHostPort(c.HTTP.PprofAddr); err == nil && !isLoopback(host) {
			bad("http.pprof_addr", "must be a loopback address such as 127.0.0.1:6060, got %q", c.HTTP.PprofAddr)
		}
	}

	a := c.Auth
	if a.AccessTTL < time.Minute {
		bad("auth.access_ttl", "must be at least 1m, got %s", a.AccessTTL)
	}
	if a.RefreshTTL <= a.AccessTTL {
		bad("auth.refresh_ttl", "must be longer than auth.access_ttl (%s), got %s", a.AccessTTL, a.RefreshTTL)
	}
	between("auth.bcrypt_cost", a.BcryptCost, minBcryptCost, maxBcryptCost)

	between("limits.max_message_bytes", c.Limits.MaxMessageBytes, 256, 16<<20)
	between("limits.max_group_members", c.Limits.MaxGroupMembers, 2, 100_000)
	between("limits.send_rate", c.Limits.SendRate, 0, 1_000_000)
	between("limits.auth_rate", c.Limits.AuthRate, 0, 1_000_000)
	if c.Limits.SendRate > 0 {
		between("limits.send_burst", c.Limits.SendBurst, 1, 1_000_000)
	}
	if c.Limits.AuthRate > 0 {
		between("limits.auth_burst", c.Limits.AuthBurst, 1, 1_000_000)
	}

	if c.Presence.Grace < 0 || c.Presence.Grace > time.Hour {
		bad("presence.grace", "must be between 0s and 1h, got %s", c.Presence.Grace)
	}

	return errors.Join(errs...)
}

// checkHostPort accepts what net.Listen would, minus service names: an
// optional host and a numeric port (0 picks a free one, handy in tests).
func checkHostPort(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	return nil
}

// isLoopback accepts localhost and loopback IPs only: an empty host would
// listen on every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
