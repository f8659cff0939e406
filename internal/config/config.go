// Package config holds chatd's configuration: its shape, its defaults and its
// validation. Values come from a YAML file, then MQCHAT_* environment
// variables, then command-line flags, each overriding the one before.
package config

import (
	"slices"
	"time"
)

// Config is the whole configuration. Every field carries a koanf tag with its
// dotted key; the environment variable for a key is MQCHAT_ + the key
// upper-cased with dots replaced by underscores.
type Config struct {
	DataDir  string         `koanf:"data_dir"`
	NodeID   int            `koanf:"node_id"`
	Log      LogConfig      `koanf:"log"`
	MQTT     MQTTConfig     `koanf:"mqtt"`
	HTTP     HTTPConfig     `koanf:"http"`
	Auth     AuthConfig     `koanf:"auth"`
	Limits   Limits         `koanf:"limits"`
	Presence PresenceConfig `koanf:"presence"`
	Push     PushConfig     `koanf:"push"`
	Store    StoreConfig    `koanf:"store"`
	Cluster  ClusterConfig  `koanf:"cluster"`
	Blob     BlobConfig     `koanf:"blob"`
	Archive  ArchiveConfig  `koanf:"archive"`
	// Retention purges old messages (services/retention).
	Retention RetentionConfig `koanf:"retention"`
	// Attachments bounds uploads (services/attachments).
	Attachments AttachmentsConfig `koanf:"attachments"`
}

// ArchiveConfig moves messages to the blob store before retention purges
// them (services/archive).
type ArchiveConfig struct {
	// Enabled archives every purged message first, and serves history
	// below a chat's live range from the archive.
	Enabled bool `koanf:"enabled"`
}

// AttachmentsConfig bounds uploads and says how long one may wait for a
// message to reference it.
type AttachmentsConfig struct {
	MaxBytes        int           `koanf:"max_bytes"`
	DailyBytes      int           `koanf:"daily_bytes"`
	UnreferencedTTL time.Duration `koanf:"unreferenced_ttl"`
}

// BlobConfig picks the object store holding attachments and archives.
type BlobConfig struct {
	// Backend is fs (a directory under data_dir/blobs, one node only) or
	// s3 (any S3-compatible service, shared by a cluster).
	Backend string   `koanf:"backend"`
	S3      S3Config `koanf:"s3"`
}

// S3Config locates an S3-compatible bucket.
type S3Config struct {
	// Endpoint is host[:port], without a scheme: UseTLS picks https.
	Endpoint  string `koanf:"endpoint"`
	Bucket    string `koanf:"bucket"`
	Region    string `koanf:"region"`
	AccessKey string `koanf:"access_key"`
	SecretKey string `koanf:"secret_key"`
	UseTLS    bool   `koanf:"use_tls"`
	// PathStyle addresses the bucket as endpoint/bucket instead of
	// bucket.endpoint, as MinIO and most self-hosted services need.
	PathStyle bool `koanf:"path_style"`
}

// RetentionConfig bounds how long messages are kept. A chat's own setting
// (PUT /v1/chats/{chat}/retention) replaces Default; Max caps both.
type RetentionConfig struct {
	// Default applies to chats without a setting; 0 keeps them forever.
	Default time.Duration `koanf:"default"`
	// Max caps every chat's period; 0 = no cap.
	Max time.Duration `koanf:"max"`
	// Interval is the time between two purge passes.
	Interval time.Duration `koanf:"interval"`
	// Batch bounds the messages one pass purges per chat, so a chat with a
	// long backlog cannot hold a pass up; the next pass goes on.
	Batch int `koanf:"batch"`
}

// ClusterConfig runs chatd as one of several identical nodes sharing NATS
// (the bus and the membership) and a shared store.
type ClusterConfig struct {
	Enabled bool `koanf:"enabled"`
	// Name prefixes NATS subjects and KV buckets, so that several clusters
	// can share one NATS.
	Name string `koanf:"name"`
	// NodeID names this node on the bus; empty derives one from the host
	// name and a random suffix.
	NodeID string `koanf:"node_id"`
	// Heartbeat is how often the node renews its membership key; TTL is how
	// long a silent node keeps it (and its chats).
	Heartbeat time.Duration `koanf:"heartbeat"`
	TTL       time.Duration `koanf:"ttl"`
	// RequestTimeout bounds one request to another node (forwarded sends,
	// takeovers, presence snapshots).
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// Advertise* are the public endpoints discovery hands to clients;
	// empty derives them from the bound addresses.
	AdvertiseMQTT string     `koanf:"advertise_mqtt"`
	AdvertiseWS   string     `koanf:"advertise_ws"`
	AdvertiseHTTP string     `koanf:"advertise_http"`
	NATS          NATSConfig `koanf:"nats"`
}

// NATSConfig locates and authenticates to the NATS servers.
type NATSConfig struct {
	URL       string `koanf:"url"` // comma-separated server URLs
	CredsFile string `koanf:"creds_file"`
	Token     string `koanf:"token"`
	User      string `koanf:"user"`
	Password  string `koanf:"password"`
	TLSCA     string `koanf:"tls_ca"`
	TLSCert   string `koanf:"tls_cert"`
	TLSKey    string `koanf:"tls_key"`
	// Replicas of the membership bucket: 3 on a NATS cluster, so that
	// losing one NATS server loses no membership.
	Replicas int `koanf:"replicas"`
}

// PushConfig configures push notifications for messages no device of a
// recipient received.
type PushConfig struct {
	// Provider is fcm, log (records what would be sent), none, or auto:
	// fcm when fcm.credentials_file is set, else log.
	Provider string `koanf:"provider"`
	// AckTimeout is how long a connected device has to acknowledge an
	// inbox delivery before its user is pushed anyway.
	AckTimeout time.Duration `koanf:"ack_timeout"`
	// IncludeBody puts message text in pushes; off so end-to-end
	// encrypted bodies never leave in a push.
	IncludeBody bool `koanf:"include_body"`
	Workers     int  `koanf:"workers"`
	// QueueSize bounds pushes waiting for a worker (one per user and
	// chat); past it pushes are dropped and counted.
	QueueSize int `koanf:"queue_size"`
	// MaxAttempts, RetryBackoff and RetryBackoffMax shape retries of
	// transient provider failures (doubling backoff with a cap).
	MaxAttempts     int           `koanf:"max_attempts"`
	RetryBackoff    time.Duration `koanf:"retry_backoff"`
	RetryBackoffMax time.Duration `koanf:"retry_backoff_max"`
	FCM             FCMConfig     `koanf:"fcm"`
}

// FCMConfig locates Firebase Cloud Messaging.
type FCMConfig struct {
	// CredentialsFile is the Firebase service-account JSON key.
	CredentialsFile string `koanf:"credentials_file"`
	// Endpoint replaces https://fcm.googleapis.com/v1 (emulators, tests).
	Endpoint string `koanf:"endpoint"`
}

type LogConfig struct {
	Level  string `koanf:"level"`  // debug | info | warn | error
	Format string `koanf:"format"` // text | json
}

type MQTTConfig struct {
	Addr             string   `koanf:"addr"`
	WSAddr           string   `koanf:"ws_addr"` // empty disables the WebSocket listener
	WSPath           string   `koanf:"ws_path"`
	WSAllowedOrigins []string `koanf:"ws_allowed_origins"`
	TLSAddr          string   `koanf:"tls_addr"` // empty disables TLS; needs tls_cert and tls_key
	TLSCert          string   `koanf:"tls_cert"`
	TLSKey           string   `koanf:"tls_key"`
	// WSTLSCert and WSTLSKey make the WebSocket listener serve wss://.
	WSTLSCert string `koanf:"ws_tls_cert"`
	WSTLSKey  string `koanf:"ws_tls_key"`
	// ClientWritesPending bounds each connection's outbound queue. mochi
	// allocates it up front (8 bytes a slot plus a 96-byte header, rounded
	// up to an allocation size class), so it is a per-connection memory
	// lever: 1000 fills an 8 KiB class, where 1024 took 9.25 KiB.
	ClientWritesPending int `koanf:"client_writes_pending"`
	// MaxInflight caps QoS 1 messages held for one session (online or not).
	MaxInflight int `koanf:"max_inflight"`
	// ReceiveMaximum caps unacknowledged QoS 1/2 publishes a client may have
	// outstanding towards the server.
	ReceiveMaximum int           `koanf:"receive_maximum"`
	SessionExpiry  time.Duration `koanf:"session_expiry"` // upper bound on MQTT session expiry
	KeepAliveMax   time.Duration `koanf:"keepalive_max"`  // 0 = accept the client's keep-alive
	// OutboundQueueBytes bounds the encoded bytes waiting for one
	// connection's socket; ClientWritesPending bounds the same queue in
	// packets.
	OutboundQueueBytes int `koanf:"outbound_queue_bytes"`
	// StallTimeout is how long a connection's outbound queue may stay full,
	// or its socket take no bytes, before the client is disconnected.
	StallTimeout time.Duration `koanf:"stall_timeout"`
	// TopicAliasMaximum is the MQTT 5 Topic Alias Maximum the server
	// announces: how many topic aliases one connection may register.
	TopicAliasMaximum int `koanf:"topic_alias_maximum"`
	// MaxTopicBytes bounds the topic names a client may register as aliases
	// and the filters it may subscribe to, so aliases and subscriptions cost
	// a bounded amount of memory per connection and per session.
	MaxTopicBytes int `koanf:"max_topic_bytes"`
	// MaxSubscriptions caps the filters one session holds, restored
	// sessions included.
	MaxSubscriptions int `koanf:"max_subscriptions"`
	// MaxFiltersPerSubscribe caps the filters granted from one SUBSCRIBE.
	MaxFiltersPerSubscribe int `koanf:"max_filters_per_subscribe"`
}

// PresenceConfig tunes the presence/{uid} aggregate.
type PresenceConfig struct {
	// Grace is how long a user whose last device left stays online, so a
	// quick reconnect produces no offline/online flap.
	Grace time.Duration `koanf:"grace"`
	// VisibilityCacheSize bounds the cached answers to "may this user see
	// that one's presence", asked before every presence delivery.
	VisibilityCacheSize int `koanf:"visibility_cache_size"`
	// PublishWorkers publish presence changes, so that one user's fan-out
	// to many watchers delays nobody else's.
	PublishWorkers int `koanf:"publish_workers"`
	// PublishInterval is the least time between two publishes of one
	// user's presence; faster changes collapse into the newest, so a
	// flapping connection costs its watchers little.
	PublishInterval time.Duration `koanf:"publish_interval"`
}

type HTTPConfig struct {
	Addr string `koanf:"addr"`
	// PprofAddr serves net/http/pprof on its own listener when set; it
	// must be a loopback address because profiles expose internals.
	PprofAddr string `koanf:"pprof_addr"`
	// MetricsAddr moves /metrics from the API to a listener of its own
	// when set, so that the public port says nothing about the node's
	// load; empty keeps it on the API. It may equal PprofAddr (one
	// loopback operator port for both).
	MetricsAddr string `koanf:"metrics_addr"`
	// AllowedOrigins lists the browser origins, besides chatd's own pages,
	// that may open the WebSocket and call the API (CORS); "*" alone
	// allows any.
	AllowedOrigins []string `koanf:"allowed_origins"`
	// TLSCert and TLSKey make the API serve HTTPS.
	TLSCert string `koanf:"tls_cert"`
	TLSKey  string `koanf:"tls_key"`
}

// AllowedOrigins is http.allowed_origins with the entries of its deprecated
// alias mqtt.ws_allowed_origins added, without repeats.
func (c Config) AllowedOrigins() []string {
	out := make([]string, 0, len(c.HTTP.AllowedOrigins)+len(c.MQTT.WSAllowedOrigins))
	for _, o := range append(slices.Clone(c.HTTP.AllowedOrigins), c.MQTT.WSAllowedOrigins...) {
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

type AuthConfig struct {
	JWTSecret      string        `koanf:"jwt_secret"` // generated into data_dir when empty
	AccessTTL      time.Duration `koanf:"access_ttl"`
	RefreshTTL     time.Duration `koanf:"refresh_ttl"`
	AllowAnonymous bool          `koanf:"allow_anonymous"`
	BcryptCost     int           `koanf:"bcrypt_cost"`
}

type Limits struct {
	MaxMessageBytes int `koanf:"max_message_bytes"`
	// MaxGroupMembers bounds a group, owner included; fan-out is on write.
	MaxGroupMembers int `koanf:"max_group_members"`
	// MaxBlocks bounds one user's block list (held in memory whole while
	// the user is active).
	MaxBlocks int `koanf:"max_blocks"`
	// GroupInvites is "consent" (users put in a group by someone they
	// share no accepted chat with are invited and must accept) or "auto"
	// (added at once).
	GroupInvites string `koanf:"group_invites"`
	// SendRate and SendBurst bound each user's sends (MQTT and REST
	// together) with a token bucket; 0 turns the limit off.
	SendRate  int `koanf:"send_rate"`
	SendBurst int `koanf:"send_burst"`
	// AuthRate and AuthBurst bound /v1/auth/* requests per client IP,
	// against password guessing; 0 turns the limit off.
	AuthRate  int `koanf:"auth_rate"`
	AuthBurst int `koanf:"auth_burst"`
	// LoginFailures consecutive failed logins of one username pass freely;
	// after that each attempt waits a delay doubling from 1s up to
	// LoginBackoffMax, whatever address it comes from. 0 turns it off.
	LoginFailures   int           `koanf:"login_failures"`
	LoginBackoffMax time.Duration `koanf:"login_backoff_max"`
	// MaxConnectionsPerUser caps one user's simultaneous MQTT connections; a
	// device reconnecting with its client id replaces its old connection
	// and does not count twice.
	MaxConnectionsPerUser int `koanf:"max_connections_per_user"`
	// DeviceConnects CONNECTs are allowed per device (client id) every
	// DeviceConnectsWindow, against reconnect storms; 0 turns it off.
	DeviceConnects       int           `koanf:"device_connects"`
	DeviceConnectsWindow time.Duration `koanf:"device_connects_window"`
	// GroupOpRate and GroupOpBurst bound each user's group changes
	// (create, rename, delete, members, roles; MQTT and REST together)
	// with a token bucket; 0 turns the limit off.
	GroupOpRate  int `koanf:"group_op_rate"`
	GroupOpBurst int `koanf:"group_op_burst"`
	// LookupRate and LookupBurst bound each user's username lookups
	// (GET /v1/users?username=), so nobody can test a dictionary of names;
	// 0 turns the limit off.
	LookupRate  int `koanf:"lookup_rate"`
	LookupBurst int `koanf:"lookup_burst"`
	// MaxKeyBytes bounds each end-to-end key the key directory accepts
	// (identity key, signed prekey, signature, one-time prekey); post-quantum
	// keys are about 1.5 KB.
	MaxKeyBytes int `koanf:"max_key_bytes"`
	// MaxOneTimePrekeys bounds the one-time prekeys one device holds.
	MaxOneTimePrekeys int `koanf:"max_one_time_prekeys"`
	// PrekeysLow: a claim leaving a device fewer one-time prekeys than
	// this tells its owner to upload more.
	PrekeysLow int `koanf:"prekeys_low"`
	// KeyClaimRate and KeyClaimBurst bound each user's key bundle fetches
	// (each claims one-time prekeys, which others cannot refill); 0 turns
	// the limit off.
	KeyClaimRate  int `koanf:"key_claim_rate"`
	KeyClaimBurst int `koanf:"key_claim_burst"`
	// DeviceMessagesPending bounds the device messages waiting for one
	// device (end-to-end encryption); past it a send to it is refused.
	DeviceMessagesPending int `koanf:"device_messages_pending"`
	// EditWindow is how long after sending a message its sender may edit
	// it; 0 turns edits off. Deletes and reactions have no window.
	EditWindow time.Duration `koanf:"edit_window"`
	// ReactionsPerMessage bounds the distinct emoji on one message, so a
	// history page stays small whatever a group does to one message.
	ReactionsPerMessage int `koanf:"reactions_per_message"`
}

// StoreConfig picks the storage backends (see docs/storage.md).
type StoreConfig struct {
	// Relational holds users, groups and devices: pebble | postgres.
	Relational string `koanf:"relational"`
	// Messages holds the message log, dedupe records and chat lists with
	// cursors: pebble | postgres | cassandra.
	Messages string `koanf:"messages"`
	// MigrateOnStart applies pending schema migrations at start-up.
	MigrateOnStart bool            `koanf:"migrate_on_start"`
	Postgres       PostgresConfig  `koanf:"postgres"`
	Cassandra      CassandraConfig `koanf:"cassandra"`
}

type PostgresConfig struct {
	DSN string `koanf:"dsn"` // postgres:// URL or key=value string; may carry a password
}

type CassandraConfig struct {
	Hosts       []string `koanf:"hosts"`
	Keyspace    string   `koanf:"keyspace"`
	Consistency string   `koanf:"consistency"`
	LocalDC     string   `koanf:"local_dc"` // empty = no data-centre preference
	Username    string   `koanf:"username"`
	Password    string   `koanf:"password"`
}

// Default returns the configuration used when nothing overrides it.
func Default() Config {
	return Config{
		DataDir: "./data",
		NodeID:  0,
		Log:     LogConfig{Level: "info", Format: "text"},
		MQTT: MQTTConfig{
			Addr:                ":1883",
			WSAddr:              ":8083",
			WSPath:              "/mqtt",
			WSAllowedOrigins:    []string{},
			ClientWritesPending: 1000,
			MaxInflight:         1024,
			ReceiveMaximum:      256,
			SessionExpiry:       7 * 24 * time.Hour,
			KeepAliveMax:        5 * time.Minute,
			OutboundQueueBytes:  1 << 20,
			StallTimeout:        10 * time.Second,
			// Per-client limits.
			TopicAliasMaximum:      32,
			MaxTopicBytes:          512,
			MaxSubscriptions:       100,
			MaxFiltersPerSubscribe: 32,
		},
		HTTP: HTTPConfig{Addr: ":8080", AllowedOrigins: []string{}},
		Auth: AuthConfig{
			AccessTTL:  time.Hour,
			RefreshTTL: 30 * 24 * time.Hour,
			BcryptCost: 10,
		},
		Limits: Limits{
			MaxMessageBytes: 64 * 1024,
			MaxGroupMembers: 500,
			MaxBlocks:       1000,
			GroupInvites:    "consent",
			SendRate:        50,
			SendBurst:       200,
			AuthRate:        5,
			AuthBurst:       20,
			LoginFailures:   5,
			LoginBackoffMax: 5 * time.Minute,
			// Per-user limits on connections and group changes.
			MaxConnectionsPerUser: 16,
			DeviceConnects:        10,
			DeviceConnectsWindow:  10 * time.Second,
			GroupOpRate:           2,
			GroupOpBurst:          20,
			LookupRate:            1,
			LookupBurst:           10,
			MaxKeyBytes:           4096,
			MaxOneTimePrekeys:     200,
			PrekeysLow:            10,
			KeyClaimRate:          1,
			KeyClaimBurst:         20,
			DeviceMessagesPending: 1000,
			EditWindow:            48 * time.Hour,
			ReactionsPerMessage:   20,
		},
		Presence: PresenceConfig{Grace: 30 * time.Second, VisibilityCacheSize: 65536, PublishWorkers: 4, PublishInterval: 500 * time.Millisecond},
		Push: PushConfig{
			Provider:        "auto",
			AckTimeout:      10 * time.Second,
			Workers:         4,
			QueueSize:       10000,
			MaxAttempts:     5,
			RetryBackoff:    time.Second,
			RetryBackoffMax: time.Minute,
		},
		Cluster: ClusterConfig{
			Name:           "mqchat",
			Heartbeat:      time.Second,
			TTL:            5 * time.Second,
			RequestTimeout: 5 * time.Second,
			NATS:           NATSConfig{URL: "nats://127.0.0.1:4222", Replicas: 1},
		},
		Blob:      BlobConfig{Backend: "fs", S3: S3Config{UseTLS: true}},
		Retention: RetentionConfig{Interval: time.Minute, Batch: 1000},
		Attachments: AttachmentsConfig{
			MaxBytes:        25 << 20,
			DailyBytes:      500 << 20,
			UnreferencedTTL: 24 * time.Hour,
		},
		Store: StoreConfig{
			Relational:     "pebble",
			Messages:       "pebble",
			MigrateOnStart: true,
			Cassandra: CassandraConfig{
				Hosts:       []string{},
				Keyspace:    "mqchat",
				Consistency: "LOCAL_QUORUM",
			},
		},
	}
}
