package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"
)

// envPrefix starts every environment variable that configures chatd.
const envPrefix = "MQCHAT_"

// kind is the small set of value types a setting may have. Keeping it closed
// lets every layer (YAML, env, flags) parse and report errors the same way.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindDuration
	kindStrings
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindInt:
		return "an integer"
	case kindBool:
		return "a boolean"
	case kindDuration:
		return `a duration such as "30s" or "168h"`
	case kindStrings:
		return "a list of strings"
	}
	return "?"
}

// field is one leaf setting of Config.
type field struct {
	key   string // dotted koanf key, e.g. "mqtt.ws_path"
	index []int  // for reflect.Value.FieldByIndex
	kind  kind
}

func (f field) env() string { return envName(f.key) }

// envName maps a dotted key to its environment variable. The reverse is not
// computable (keys contain underscores), which is why env lookups go through
// the table built from fields().
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

var durationType = reflect.TypeFor[time.Duration]()

// fields reflects over Config so the set of keys is defined in exactly one
// place: the struct's koanf tags. The result is sorted by key.
func fields() []field {
	var out []field
	walkFields(reflect.TypeFor[Config](), "", nil, &out)
	slices.SortFunc(out, func(a, b field) int { return strings.Compare(a.key, b.key) })
	return out
}

// walkFields panics on an untagged or unsupported field: that is a mistake in
// Config itself, and every test of this package trips over it immediately.
func walkFields(t reflect.Type, prefix string, index []int, out *[]field) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("koanf"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			panic(fmt.Sprintf("config: field %s.%s has no koanf tag", t.Name(), sf.Name))
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		idx := append(slices.Clone(index), i)
		var k kind
		switch {
		case sf.Type == durationType:
			k = kindDuration
		case sf.Type.Kind() == reflect.Struct:
			walkFields(sf.Type, key, idx, out)
			continue
		case sf.Type.Kind() == reflect.String:
			k = kindString
		case sf.Type.Kind() == reflect.Int:
			k = kindInt
		case sf.Type.Kind() == reflect.Bool:
			k = kindBool
		case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.String:
			k = kindStrings
		default:
			panic(fmt.Sprintf("config: field %s.%s has unsupported type %s", t.Name(), sf.Name, sf.Type))
		}
		*out = append(*out, field{key: key, index: idx, kind: k})
	}
}

// Keys returns every dotted configuration key, sorted.
func Keys() []string {
	fs := fields()
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	return keys
}

// secret reports whether a key's value must never reach a log.
func secret(key string) bool {
	switch key {
	case "auth.jwt_secret", "store.postgres.dsn", "store.cassandra.password", "cluster.nats.token", "cluster.nats.password", "blob.s3.secret_key":
		return true
	}
	return false
}

// usage is the one-line help for a key, shown by --help. The same wording
// appears in configs/chatd.yaml and docs/configuration.md.
func usage(key string) string {
	switch key {
	case "data_dir":
		return "directory for the message store and generated secrets"
	case "node_id":
		return "this node's number (0-1023), mixed into generated message IDs; unique per node"
	case "log.level":
		return "minimum log level: debug, info, warn or error"
	case "log.format":
		return "log output format: text or json"
	case "mqtt.addr":
		return "host:port of the plain TCP MQTT listener"
	case "mqtt.ws_addr":
		return "host:port of the MQTT-over-WebSocket listener; empty disables it"
	case "mqtt.ws_path":
		return "HTTP path of the MQTT WebSocket endpoint"
	case "mqtt.ws_allowed_origins":
		return "deprecated: use http.allowed_origins; entries here are added to it"
	case "mqtt.ws_tls_cert":
		return "PEM certificate chain file; with ws_tls_key the WebSocket listener serves wss://"
	case "mqtt.ws_tls_key":
		return "PEM private key file for the WebSocket listener's TLS"
	case "mqtt.tls_addr":
		return "host:port of the MQTT-over-TLS listener; empty disables it (needs tls_cert and tls_key)"
	case "mqtt.tls_cert":
		return "PEM certificate chain file for the TLS listener"
	case "mqtt.tls_key":
		return "PEM private key file for the TLS listener"
	case "mqtt.client_writes_pending":
		return "outbound packet queue per connection (16-65536); preallocated at 8 bytes a slot"
	case "mqtt.max_inflight":
		return "QoS 1 messages held for one session (1-65535); newer ones are dropped past it"
	case "mqtt.receive_maximum":
		return "unacknowledged QoS 1/2 publishes a client may have outstanding (1-65535)"
	case "mqtt.session_expiry":
		return "longest an offline persistent session is kept (at most 4294967295s)"
	case "mqtt.keepalive_max":
		return "upper bound on a client's keep-alive (at most 65535s); 0 accepts the client's value"
	case "mqtt.outbound_queue_bytes":
		return "encoded bytes that may wait for one connection's socket (64KiB-1GiB)"
	case "mqtt.stall_timeout":
		return "how long a connection's outbound queue may stay full before the client is disconnected (100ms-10m)"
	case "mqtt.topic_alias_maximum":
		return "topic aliases one MQTT 5 connection may register (1-65535); a higher alias is refused with DISCONNECT 0x94"
	case "mqtt.max_topic_bytes":
		return "longest topic a client may register as an alias or subscribe to, in bytes (64-65535)"
	case "mqtt.max_subscriptions":
		return "filters one session may hold (1-100000), restored sessions included; past it SUBACK 0x97 (0x80 for 3.1.1)"
	case "mqtt.max_filters_per_subscribe":
		return "filters granted from one SUBSCRIBE (1 to max_subscriptions); the rest get SUBACK 0x97 (0x80 for 3.1.1)"
	case "http.addr":
		return "host:port of the HTTP API"
	case "http.allowed_origins":
		return "browser origins (scheme://host[:port]) allowed to open the WebSocket and call the API besides chatd's own pages; \"*\" alone allows any"
	case "http.tls_cert":
		return "PEM certificate chain file; with tls_key the HTTP API serves HTTPS"
	case "http.tls_key":
		return "PEM private key file for the HTTP API's TLS"
	case "http.pprof_addr":
		return "loopback host:port serving Go's pprof profiles; empty disables"
	case "http.metrics_addr":
		return "host:port serving /metrics on a listener of its own (may equal pprof_addr); empty = on the HTTP API"
	case "auth.jwt_secret":
		return "HMAC secret for access tokens; empty = generated into data_dir/jwt.secret"
	case "auth.access_ttl":
		return "lifetime of an access token (at least 1m)"
	case "auth.refresh_ttl":
		return "lifetime of a refresh token (longer than access_ttl)"
	case "auth.allow_anonymous":
		return "let MQTT clients connect without credentials"
	case "auth.bcrypt_cost":
		return "bcrypt cost for password hashes (4-31)"
	case "limits.max_message_bytes":
		return "largest accepted send payload in bytes (256-16777216)"
	case "limits.max_group_members":
		return "most members a group may have, owner included (2-100000)"
	case "limits.max_blocks":
		return "most users one user may block (1-100000)"
	case "limits.group_invites":
		return "consent: users put in a group by someone they share no accepted chat with must accept; auto: added at once"
	case "limits.send_rate":
		return "sends per second allowed to each user, MQTT and REST together (0 = unlimited)"
	case "limits.send_burst":
		return "sends a user may make at once above send_rate"
	case "limits.auth_rate":
		return "/v1/auth requests per second allowed from one client IP (0 = unlimited)"
	case "limits.auth_burst":
		return "/v1/auth requests one client IP may make at once above auth_rate"
	case "limits.login_failures":
		return "consecutive failed logins of one username before each attempt must wait (0 = no per-account limit)"
	case "limits.login_backoff_max":
		return "longest wait between login attempts of one username (1s-1h); the wait doubles from 1s per further failure"
	case "limits.max_connections_per_user":
		return "simultaneous MQTT connections of one user (1-100000); past it CONNACK 0x97 (0x03 for 3.1.1)"
	case "limits.device_connects":
		return "CONNECTs allowed per device id every device_connects_window; past it CONNACK 0x9F (0x03 for 3.1.1); 0 = unlimited"
	case "limits.device_connects_window":
		return "window of device_connects (1s-1h)"
	case "limits.group_op_rate":
		return "group changes per second allowed to each user, MQTT and REST together (0 = unlimited)"
	case "limits.group_op_burst":
		return "group changes a user may make at once above group_op_rate"
	case "limits.lookup_rate":
		return "username lookups per second allowed to each user (0 = unlimited)"
	case "limits.lookup_burst":
		return "username lookups a user may make at once above lookup_rate"
	case "limits.max_key_bytes":
		return "largest end-to-end key, signed prekey or signature a device may publish, in bytes (32-65536)"
	case "limits.max_one_time_prekeys":
		return "one-time prekeys one device may hold (1-100000); an upload past it is refused whole"
	case "retention.default":
		return "how long messages of a chat without its own retention setting are kept (0 = forever)"
	case "retention.max":
		return "longest retention any chat may have; longer settings are capped to it (0 = no maximum)"
	case "retention.interval":
		return "time between two retention passes (10ms-24h)"
	case "retention.batch":
		return "most messages one retention pass purges per chat (1-1000000)"
	case "limits.edit_window":
		return "how long after sending a message its sender may edit it (0 = no edits)"
	case "limits.reactions_per_message":
		return "most distinct emoji one message may carry as reactions (1-1000)"
	case "limits.prekeys_low":
		return "a claim leaving a device fewer one-time prekeys than this sends its owner a prekeys_low event (0 = only at 0)"
	case "limits.key_claim_rate":
		return "key bundle fetches (claims) per second allowed to each user (0 = unlimited)"
	case "limits.key_claim_burst":
		return "key bundle fetches a user may make at once above key_claim_rate"
	case "limits.device_messages_pending":
		return "device messages waiting for one device (1-1000000); past it a send to that device is refused with quota_exceeded"
	case "presence.grace":
		return "how long a user stays online after its last device left (0s-1h)"
	case "presence.visibility_cache_size":
		return "cached answers to who may see whose presence (1-16777216), about 300 bytes each; a quarter more for denials"
	case "presence.publish_workers":
		return "goroutines publishing presence changes (1-256)"
	case "presence.publish_interval":
		return "least time between two publishes of one user's presence (0s-1m); faster changes collapse into the newest"
	case "push.provider":
		return "push provider: fcm, log (records what would be sent), none, or auto (fcm when push.fcm.credentials_file is set, else log)"
	case "push.ack_timeout":
		return "how long a connected device has to acknowledge an inbox message before its user is pushed (100ms-10m)"
	case "push.include_body":
		return "put message text in pushes (keep off when bodies are end-to-end encrypted)"
	case "push.workers":
		return "goroutines sending pushes (1-1024)"
	case "push.queue_size":
		return "pushes waiting for a worker, one per user and chat (1-10000000); overflow is dropped and counted"
	case "push.max_attempts":
		return "sends of one push to one device, first included, on transient errors (1-100)"
	case "push.retry_backoff":
		return "delay before the first retry of a transient error, doubling after each (1ms-1h)"
	case "push.retry_backoff_max":
		return "longest delay between retries (at least retry_backoff, at most 24h)"
	case "push.fcm.credentials_file":
		return "Firebase service-account JSON key file; its project_id and token_uri are used"
	case "push.fcm.endpoint":
		return "base URL replacing https://fcm.googleapis.com/v1 (emulators, tests); empty = Google's"
	case "cluster.enabled":
		return "run as one node of a cluster sharing NATS and PostgreSQL (Cassandra); needs auth.jwt_secret and no pebble store"
	case "cluster.name":
		return "prefix of the cluster's NATS subjects and KV buckets, so several clusters can share one NATS"
	case "cluster.node_id":
		return "this node's unique name (letters, digits, - and _; up to 64); empty = host name plus a random suffix"
	case "cluster.heartbeat":
		return "how often the node renews its membership key (50ms-10s)"
	case "cluster.ttl":
		return "how long a silent node keeps its membership and its chats (at least 1s and 3 heartbeats, at most 1m); same on every node"
	case "cluster.request_timeout":
		return "longest wait for another node: forwarded sends, takeovers, presence snapshots (100ms-1m)"
	case "cluster.advertise_mqtt":
		return "public MQTT endpoint (host:port) discovery hands out for this node; empty = derived from mqtt.addr"
	case "cluster.advertise_ws":
		return "public MQTT-over-WebSocket URL discovery hands out for this node; empty = derived from mqtt.ws_addr"
	case "cluster.advertise_http":
		return "public REST base URL discovery hands out for this node; empty = derived from http.addr"
	case "cluster.nats.url":
		return "NATS server URLs, comma-separated (nats:// or tls://)"
	case "cluster.nats.creds_file":
		return "NATS credentials file (JWT and NKey seed)"
	case "cluster.nats.token":
		return "NATS authentication token"
	case "cluster.nats.user":
		return "NATS user name (with cluster.nats.password)"
	case "cluster.nats.password":
		return "NATS password"
	case "cluster.nats.tls_ca":
		return "CA certificate file to verify the NATS servers"
	case "cluster.nats.tls_cert":
		return "client certificate file for NATS mutual TLS (with cluster.nats.tls_key)"
	case "cluster.nats.replicas":
		return "copies of the membership bucket in the NATS cluster (1-5); 3 on a three-server NATS cluster"
	case "cluster.nats.tls_key":
		return "client key file for NATS mutual TLS"
	case "store.relational":
		return "backend for users, groups and devices: pebble or postgres"
	case "store.messages":
		return "backend for messages, dedupe records and chat lists: pebble, postgres or cassandra"
	case "store.migrate_on_start":
		return "apply pending PostgreSQL/Cassandra schema migrations at start-up"
	case "store.postgres.dsn":
		return "PostgreSQL connection string (postgres:// URL or key=value); required when a backend is postgres"
	case "store.cassandra.hosts":
		return "Cassandra contact points (host or host:port); required when store.messages is cassandra"
	case "store.cassandra.keyspace":
		return "Cassandra keyspace holding chatd's tables"
	case "store.cassandra.consistency":
		return "Cassandra consistency level for reads and writes, e.g. LOCAL_QUORUM, QUORUM, ONE"
	case "store.cassandra.local_dc":
		return "Cassandra data centre to prefer; empty = no preference"
	case "store.cassandra.username":
		return "Cassandra user name; empty = no authentication"
	case "store.cassandra.password":
		return "Cassandra password (with username)"
	case "blob.backend":
		return "object store for attachments and archives: fs (data_dir/blobs) or s3"
	case "blob.s3.endpoint":
		return "S3 endpoint host[:port] without scheme; required when blob.backend is s3"
	case "blob.s3.bucket":
		return "S3 bucket; required when blob.backend is s3"
	case "blob.s3.region":
		return "S3 region; empty lets the client discover it"
	case "blob.s3.access_key":
		return "S3 access key id (with blob.s3.secret_key)"
	case "blob.s3.secret_key":
		return "S3 secret access key"
	case "blob.s3.use_tls":
		return "reach the S3 endpoint over https"
	case "blob.s3.path_style":
		return "address the bucket as endpoint/bucket (MinIO) instead of bucket.endpoint"
	case "archive.enabled":
		return "archive messages to the blob store before retention purges them, and serve older history from the archive"
	case "attachments.max_bytes":
		return "largest attachment upload in bytes"
	case "attachments.daily_bytes":
		return "bytes each user may upload per UTC day"
	case "attachments.unreferenced_ttl":
		return "how long an upload may wait for a message to reference it before it is deleted"
	}
	return ""
}

// LogValue keeps jwt_secret out of logs: slog calls it whenever a Config is
// logged, so the effective configuration can be logged at startup safely.
func (c Config) LogValue() slog.Value {
	return logValue(reflect.ValueOf(c), "")
}

// logValue mirrors the key tree as nested groups, in struct order.
func logValue(v reflect.Value, prefix string) slog.Value {
	t := v.Type()
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("koanf"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		var val slog.Value
		switch {
		case secret(key):
			val = slog.StringValue("")
			if fv.String() != "" {
				val = slog.StringValue("[redacted]")
			}
		case fv.Type() == durationType:
			val = slog.DurationValue(time.Duration(fv.Int()))
		case fv.Kind() == reflect.Struct:
			val = logValue(fv, key)
		default:
			val = slog.AnyValue(fv.Interface())
		}
		attrs = append(attrs, slog.Attr{Key: tag, Value: val})
	}
	return slog.GroupValue(attrs...)
}
