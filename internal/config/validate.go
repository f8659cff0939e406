package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqchat/mqchat/internal/origin"
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
		errs = append(errs, invalid(key, ": "+format, args...))
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
	for _, l := range []struct {
		key  string
		list []string
	}{{"http.allowed_origins", c.HTTP.AllowedOrigins}, {"mqtt.ws_allowed_origins", m.WSAllowedOrigins}} {
		key, list := l.key, l.list
		if slices.ContainsFunc(list, func(o string) bool { return strings.TrimSpace(o) == "" }) {
			bad(key, "must not contain empty entries")
		} else if _, err := origin.New(list); err != nil {
			bad(key, "%v", err)
		}
	}
	if _, err := origin.New(c.AllowedOrigins()); err != nil && slices.Contains(c.AllowedOrigins(), "*") {
		bad("http.allowed_origins", "\"*\" must be the only entry, mqtt.ws_allowed_origins (its deprecated alias) included")
	}
	pair := func(certKey, cert, keyKey, key string) {
		if (cert == "") != (key == "") {
			bad(certKey, "%s and %s go together", certKey, keyKey)
		}
	}
	pair("mqtt.ws_tls_cert", m.WSTLSCert, "mqtt.ws_tls_key", m.WSTLSKey)
	if m.WSAddr == "" && m.WSTLSCert != "" {
		bad("mqtt.ws_tls_cert", "set but mqtt.ws_addr is empty")
	}
	pair("http.tls_cert", c.HTTP.TLSCert, "http.tls_key", c.HTTP.TLSKey)
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
	between("mqtt.outbound_queue_bytes", m.OutboundQueueBytes, 64<<10, 1<<30)
	if m.StallTimeout < 100*time.Millisecond || m.StallTimeout > 10*time.Minute {
		bad("mqtt.stall_timeout", "must be between 100ms and 10m, got %s", m.StallTimeout)
	}
	between("mqtt.topic_alias_maximum", m.TopicAliasMaximum, 1, math.MaxUint16)
	// A topic is a length-prefixed string of at most 65535 bytes.
	between("mqtt.max_topic_bytes", m.MaxTopicBytes, 64, math.MaxUint16)
	between("mqtt.max_subscriptions", m.MaxSubscriptions, 1, 100_000)
	between("mqtt.max_filters_per_subscribe", m.MaxFiltersPerSubscribe, 1, m.MaxSubscriptions)

	addr("http.addr", c.HTTP.Addr)
	if c.HTTP.PprofAddr != "" {
		addr("http.pprof_addr", c.HTTP.PprofAddr)
		if host, _, err := net.SplitHostPort(c.HTTP.PprofAddr); err == nil && !isLoopback(host) {
			bad("http.pprof_addr", "must be a loopback address such as 127.0.0.1:6060, got %q", c.HTTP.PprofAddr)
		}
	}
	if c.HTTP.MetricsAddr != "" {
		addr("http.metrics_addr", c.HTTP.MetricsAddr)
		// Port 0 picks a free port per listener, so only fixed ports clash.
		if _, port, err := net.SplitHostPort(c.HTTP.MetricsAddr); err == nil && port != "0" && c.HTTP.MetricsAddr == c.HTTP.Addr {
			bad("http.metrics_addr", "must differ from http.addr (%q): leave it empty to serve /metrics on the API", c.HTTP.Addr)
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
	between("limits.max_blocks", c.Limits.MaxBlocks, 1, 100_000)
	if g := c.Limits.GroupInvites; g != "consent" && g != "auto" {
		bad("limits.group_invites", `must be "consent" or "auto", got %q`, g)
	}
	between("limits.send_rate", c.Limits.SendRate, 0, 1_000_000)
	between("limits.auth_rate", c.Limits.AuthRate, 0, 1_000_000)
	if c.Limits.SendRate > 0 {
		between("limits.send_burst", c.Limits.SendBurst, 1, 1_000_000)
	}
	if c.Limits.AuthRate > 0 {
		between("limits.auth_burst", c.Limits.AuthBurst, 1, 1_000_000)
	}
	between("limits.login_failures", c.Limits.LoginFailures, 0, 1000)
	if c.Limits.LoginFailures > 0 && (c.Limits.LoginBackoffMax < time.Second || c.Limits.LoginBackoffMax > time.Hour) {
		bad("limits.login_backoff_max", "must be between 1s and 1h, got %s", c.Limits.LoginBackoffMax)
	}
	between("limits.max_connections_per_user", c.Limits.MaxConnectionsPerUser, 1, 100_000)
	between("limits.device_connects", c.Limits.DeviceConnects, 0, 1_000_000)
	if c.Limits.DeviceConnects > 0 {
		if w := c.Limits.DeviceConnectsWindow; w < time.Second || w > time.Hour {
			bad("limits.device_connects_window", "must be between 1s and 1h, got %s", w)
		}
	}
	between("limits.group_op_rate", c.Limits.GroupOpRate, 0, 1_000_000)
	if c.Limits.GroupOpRate > 0 {
		between("limits.group_op_burst", c.Limits.GroupOpBurst, 1, 1_000_000)
	}
	between("limits.lookup_rate", c.Limits.LookupRate, 0, 1_000_000)
	if c.Limits.LookupRate > 0 {
		between("limits.lookup_burst", c.Limits.LookupBurst, 1, 1_000_000)
	}
	if w := c.Limits.EditWindow; w < 0 || w > 365*24*time.Hour {
		bad("limits.edit_window", "must be between 0 (no edits) and 8760h, got %s", w)
	}
	between("limits.reactions_per_message", c.Limits.ReactionsPerMessage, 1, 1000)
	between("limits.max_key_bytes", c.Limits.MaxKeyBytes, 32, 64<<10)
	between("limits.max_one_time_prekeys", c.Limits.MaxOneTimePrekeys, 1, 100_000)
	between("limits.prekeys_low", c.Limits.PrekeysLow, 0, c.Limits.MaxOneTimePrekeys)
	between("limits.key_claim_rate", c.Limits.KeyClaimRate, 0, 1_000_000)
	if c.Limits.KeyClaimRate > 0 {
		between("limits.key_claim_burst", c.Limits.KeyClaimBurst, 1, 1_000_000)
	}
	between("limits.device_messages_pending", c.Limits.DeviceMessagesPending, 1, 1_000_000)
	c.validateRetention(bad, between)

	if c.Presence.Grace < 0 || c.Presence.Grace > time.Hour {
		bad("presence.grace", "must be between 0s and 1h, got %s", c.Presence.Grace)
	}
	between("presence.visibility_cache_size", c.Presence.VisibilityCacheSize, 1, 16<<20)
	between("presence.publish_workers", c.Presence.PublishWorkers, 1, 256)
	if c.Presence.PublishInterval < 0 || c.Presence.PublishInterval > time.Minute {
		bad("presence.publish_interval", "must be between 0s and 1m, got %s", c.Presence.PublishInterval)
	}

	p := c.Push
	switch p.Provider {
	case "auto", "log", "none":
	case "fcm":
		if p.FCM.CredentialsFile == "" {
			bad("push.fcm.credentials_file", "required when push.provider is fcm")
		}
	default:
		bad("push.provider", "must be auto, fcm, log or none, got %q", p.Provider)
	}
	if p.AckTimeout < 100*time.Millisecond || p.AckTimeout > 10*time.Minute {
		bad("push.ack_timeout", "must be between 100ms and 10m, got %s", p.AckTimeout)
	}
	between("push.workers", p.Workers, 1, 1024)
	between("push.queue_size", p.QueueSize, 1, 10_000_000)
	between("push.max_attempts", p.MaxAttempts, 1, 100)
	if p.RetryBackoff < time.Millisecond || p.RetryBackoff > time.Hour {
		bad("push.retry_backoff", "must be between 1ms and 1h, got %s", p.RetryBackoff)
	}
	if p.RetryBackoffMax < p.RetryBackoff || p.RetryBackoffMax > 24*time.Hour {
		bad("push.retry_backoff_max", "must be between push.retry_backoff (%s) and 24h, got %s", p.RetryBackoff, p.RetryBackoffMax)
	}
	if e := p.FCM.Endpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("push.fcm.endpoint", "must be an http(s) URL such as https://fcm.googleapis.com/v1, got %q", e)
		}
	}

	validateStore(c.Store, bad)
	validateBlob(c.Blob, bad)
	validateAttachments(c.Attachments, bad)
	validateCluster(c, bad)
	validateArchive(c, bad)
	return errors.Join(errs...)
}

// nodeName is a valid cluster.node_id: it becomes a NATS subject token and
// a KV key, so no dots, wildcards or spaces.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validateCluster checks cluster mode: only when enabled, so single-node
// configs never trip over cluster keys they do not use.
func validateCluster(c Config, bad func(key, format string, args ...any)) {
	cl := c.Cluster
	if !cl.Enabled {
		return
	}
	if c.Store.Relational == "pebble" || c.Store.Messages == "pebble" {
		bad("cluster.enabled", "needs a store every node shares: set store.relational to postgres and store.messages to postgres or cassandra (pebble is one node's embedded store)")
	}
	if c.Auth.JWTSecret == "" {
		bad("auth.jwt_secret", "required in cluster mode: every node must verify the tokens every other node issued (the same secret of at least 32 characters on all nodes)")
	}
	if c.Store.Messages == "cassandra" && c.Store.MigrateOnStart {
		bad("store.migrate_on_start", "must be false in cluster mode with Cassandra (its migrations are not safe from several nodes at once): run `chatd migrate up` once instead")
	}
	if !nodeName.MatchString(cl.Name) {
		bad("cluster.name", "must be 1-64 letters, digits, - or _, got %q", cl.Name)
	}
	if cl.NodeID != "" && !nodeName.MatchString(cl.NodeID) {
		bad("cluster.node_id", "must be 1-64 letters, digits, - or _, got %q", cl.NodeID)
	}
	if cl.Heartbeat < 50*time.Millisecond || cl.Heartbeat > 10*time.Second {
		bad("cluster.heartbeat", "must be between 50ms and 10s, got %s", cl.Heartbeat)
	}
	if cl.TTL < max(3*cl.Heartbeat, time.Second) || cl.TTL > time.Minute {
		bad("cluster.ttl", "must be at least 1s and 3 heartbeats (%s), and at most 1m, got %s", 3*cl.Heartbeat, cl.TTL)
	}
	if cl.RequestTimeout < 100*time.Millisecond || cl.RequestTimeout > time.Minute {
		bad("cluster.request_timeout", "must be between 100ms and 1m, got %s", cl.RequestTimeout)
	}
	if strings.TrimSpace(cl.NATS.URL) == "" {
		bad("cluster.nats.url", "required in cluster mode")
	}
	for _, u := range strings.Split(cl.NATS.URL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.Host == "" {
			bad("cluster.nats.url", "must be nats://host:port URLs separated by commas, got %q", u)
			break
		}
	}
	if cl.NATS.Replicas < 1 || cl.NATS.Replicas > 5 {
		bad("cluster.nats.replicas", "must be between 1 and 5, got %d", cl.NATS.Replicas)
	}
	if (cl.NATS.User == "") != (cl.NATS.Password == "") {
		bad("cluster.nats.user", "cluster.nats.user and cluster.nats.password go together")
	}
	if (cl.NATS.TLSCert == "") != (cl.NATS.TLSKey == "") {
		bad("cluster.nats.tls_cert", "cluster.nats.tls_cert and cluster.nats.tls_key go together")
	}
	if u := cl.AdvertiseWS; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "ws" && pu.Scheme != "wss") || pu.Host == "" {
			bad("cluster.advertise_ws", "must be a ws:// or wss:// URL, got %q", u)
		}
	}
	if u := cl.AdvertiseHTTP; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad("cluster.advertise_http", "must be an http:// or https:// URL, got %q", u)
		}
	}
	if a := cl.AdvertiseMQTT; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("cluster.advertise_mqtt", "must be host:port, got %q", a)
		}
	}
}

var (
	cassandraConsistencies = []string{"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL",
		"LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
	// CQL keyspace names: letters, digits and underscores, at most 48.
	keyspaceName = regexp.MustCompile(`^[A-Za-z0-9_]{1,48}$`)
)

func validateStore(s StoreConfig, bad func(key, format string, args ...any)) {
	switch s.Relational {
	case "pebble", "postgres":
	default:
		bad("store.relational", "must be pebble or postgres, got %q", s.Relational)
	}
	switch s.Messages {
	case "pebble", "postgres", "cassandra":
	default:
		bad("store.messages", "must be pebble, postgres or cassandra, got %q", s.Messages)
	}
	if (s.Relational == "postgres" || s.Messages == "postgres") && strings.TrimSpace(s.Postgres.DSN) == "" {
		bad("store.postgres.dsn", "required when store.relational or store.messages is postgres")
	}
	cs := s.Cassandra
	if s.Messages == "cassandra" && len(cs.Hosts) == 0 {
		bad("store.cassandra.hosts", "required when store.messages is cassandra")
	}
	for _, h := range cs.Hosts {
		if strings.TrimSpace(h) == "" {
			bad("store.cassandra.hosts", "must not contain empty entries")
			break
		}
	}
	if !keyspaceName.MatchString(cs.Keyspace) {
		bad("store.cassandra.keyspace", "must be 1-48 letters, digits or underscores, got %q", cs.Keyspace)
	}
	if !slices.Contains(cassandraConsistencies, strings.ToUpper(cs.Consistency)) {
		bad("store.cassandra.consistency", "must be one of %s, got %q", strings.Join(cassandraConsistencies, ", "), cs.Consistency)
	}
	if (cs.Username == "") != (cs.Password == "") {
		bad("store.cassandra.username", "store.cassandra.username and store.cassandra.password go together")
	}
}

func validateAttachments(a AttachmentsConfig, bad func(key, format string, args ...any)) {
	if a.MaxBytes <= 0 {
		bad("attachments.max_bytes", "must be positive, got %d", a.MaxBytes)
	}
	if a.DailyBytes < a.MaxBytes {
		bad("attachments.daily_bytes", "must be at least attachments.max_bytes (%d), got %d", a.MaxBytes, a.DailyBytes)
	}
	if a.UnreferencedTTL <= 0 {
		bad("attachments.unreferenced_ttl", "must be positive, got %s", a.UnreferencedTTL)
	}
}

func validateBlob(b BlobConfig, bad func(key, format string, args ...any)) {
	switch b.Backend {
	case "fs":
		return
	case "s3":
	default:
		bad("blob.backend", "must be fs or s3, got %q", b.Backend)
		return
	}
	if e := strings.TrimSpace(b.S3.Endpoint); e == "" {
		bad("blob.s3.endpoint", "required when blob.backend is s3")
	} else if strings.Contains(e, "://") || strings.Contains(e, "/") {
		bad("blob.s3.endpoint", "must be host[:port] without scheme or path (blob.s3.use_tls picks https), got %q", e)
	}
	if strings.TrimSpace(b.S3.Bucket) == "" {
		bad("blob.s3.bucket", "required when blob.backend is s3")
	}
	if (b.S3.AccessKey == "") != (b.S3.SecretKey == "") {
		bad("blob.s3.access_key", "blob.s3.access_key and blob.s3.secret_key go together")
	}
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

func validateArchive(c Config, bad func(key, format string, args ...any)) {
	// The owner of a chat archives it, but any node serves its history:
	// one node's own directory would hide the archive from the others.
	if c.Archive.Enabled && c.Cluster.Enabled && c.Blob.Backend == "fs" {
		bad("archive.enabled", "needs blob.backend s3 in cluster mode: every node reads every chat's archive")
	}
}

// maxRetention bounds retention periods (100 years): beyond it a cutoff
// time would leave the range every store keeps.
const maxRetention = 100 * 365 * 24 * time.Hour

func (c *Config) validateRetention(bad func(key, format string, args ...any), between func(key string, v, lo, hi int)) {
	r := c.Retention
	if r.Default < 0 || r.Default > maxRetention {
		bad("retention.default", "must be between 0 (keep forever) and %s, got %s", maxRetention, r.Default)
	}
	if r.Max < 0 || r.Max > maxRetention {
		bad("retention.max", "must be between 0 (no maximum) and %s, got %s", maxRetention, r.Max)
	}
	// Short intervals are for tests; a purge pass is cheap when there is
	// nothing to purge.
	if r.Interval < 10*time.Millisecond || r.Interval > 24*time.Hour {
		bad("retention.interval", "must be between 10ms and 24h, got %s", r.Interval)
	}
	between("retention.batch", r.Batch, 1, 1_000_000)
}
