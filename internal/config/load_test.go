package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// clearEnv removes any MQCHAT_* variables the test process inherited, so a
// developer's shell cannot change the outcome; t.Setenv restores them after.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) {
			t.Setenv(name, "")
			if err := os.Unsetenv(name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chatd.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		yaml string // no file when empty
		env  map[string]string
		args []string // nil: Load gets no flag set
		want func(c *Config)
	}{
		{
			name: "defaults without a file",
			want: func(*Config) {},
		},
		{
			name: "defaults with unchanged flags",
			args: []string{},
			want: func(*Config) {},
		},
		{
			name: "yaml overrides defaults",
			yaml: `
data_dir: /var/lib/chatd
node_id: 7
http:
  addr: 127.0.0.1:9000
mqtt:
  ws_addr: ""
  ws_allowed_origins: [https://a.example, https://b.example]
  keepalive_max: 90s
auth:
  access_ttl: 15m
  allow_anonymous: true
limits:
  max_message_bytes: "1024"
`,
			want: func(c *Config) {
				c.DataDir = "/var/lib/chatd"
				c.NodeID = 7
				c.HTTP.Addr = "127.0.0.1:9000"
				c.MQTT.WSAddr = ""
				c.MQTT.WSAllowedOrigins = []string{"https://a.example", "https://b.example"}
				c.MQTT.KeepAliveMax = 90 * time.Second
				c.Auth.AccessTTL = 15 * time.Minute
				c.Auth.AllowAnonymous = true
				c.Limits.MaxMessageBytes = 1024
			},
		},
		{
			name: "empty file and empty section keep defaults",
			yaml: "mqtt:\n",
			want: func(*Config) {},
		},
		{
			name: "env overrides yaml",
			yaml: "http:\n  addr: 127.0.0.1:9000\nlog:\n  level: debug\n",
			env:  map[string]string{"MQCHAT_HTTP_ADDR": ":9100"},
			want: func(c *Config) {
				c.HTTP.Addr = ":9100"
				c.Log.Level = "debug"
			},
		},
		{
			name: "flags override env, unset flags override nothing",
			yaml: "log:\n  level: debug\n",
			env:  map[string]string{"MQCHAT_HTTP_ADDR": ":9100", "MQCHAT_NODE_ID": "3"},
			args: []string{"--http.addr=:9200", "--auth.allow_anonymous", "--mqtt.ws_allowed_origins=https://a.example,https://b.example"},
			want: func(c *Config) {
				c.HTTP.Addr = ":9200"
				c.NodeID = 3
				c.Log.Level = "debug"
				c.Auth.AllowAnonymous = true
				c.MQTT.WSAllowedOrigins = []string{"https://a.example", "https://b.example"}
			},
		},
		{
			name: "typed values from env",
			env: map[string]string{
				"MQCHAT_MQTT_WS_ALLOWED_ORIGINS":    "https://a.example, https://b.example",
				"MQCHAT_MQTT_SESSION_EXPIRY":        "24h",
				"MQCHAT_AUTH_ACCESS_TTL":            "30m",
				"MQCHAT_AUTH_ALLOW_ANONYMOUS":       "true",
				"MQCHAT_LIMITS_MAX_MESSAGE_BYTES":   "1024",
				"MQCHAT_MQTT_CLIENT_WRITES_PENDING": "64",
			},
			want: func(c *Config) {
				c.MQTT.WSAllowedOrigins = []string{"https://a.example", "https://b.example"}
				c.MQTT.SessionExpiry = 24 * time.Hour
				c.Auth.AccessTTL = 30 * time.Minute
				c.Auth.AllowAnonymous = true
				c.Limits.MaxMessageBytes = 1024
				c.MQTT.ClientWritesPending = 64
			},
		},
		{
			name: "empty env list clears the file's list",
			yaml: "mqtt:\n  ws_allowed_origins: [https://a.example]\n",
			env:  map[string]string{"MQCHAT_MQTT_WS_ALLOWED_ORIGINS": ""},
			want: func(*Config) {},
		},
		{
			name: "tls enabled with cert and key",
			env: map[string]string{
				"MQCHAT_MQTT_TLS_ADDR": ":8883",
				"MQCHAT_MQTT_TLS_CERT": "/etc/chatd/cert.pem",
				"MQCHAT_MQTT_TLS_KEY":  "/etc/chatd/key.pem",
			},
			want: func(c *Config) {
				c.MQTT.TLSAddr = ":8883"
				c.MQTT.TLSCert = "/etc/chatd/cert.pem"
				c.MQTT.TLSKey = "/etc/chatd/key.pem"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			if tt.yaml != "" {
				path = writeFile(t, tt.yaml)
			}
			var fs *pflag.FlagSet
			if tt.args != nil {
				fs = pflag.NewFlagSet("chatd", pflag.ContinueOnError)
				RegisterFlags(fs)
				if err := fs.Parse(tt.args); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Load(path, fs)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		args []string
		want []string // substrings of the error
	}{
		{
			name: "unknown yaml key",
			yaml: "mqtt:\n  adr: :1883\n",
			want: []string{`config: unknown key "mqtt.adr"`},
		},
		{
			name: "unknown nested yaml key",
			yaml: "mqtt:\n  tls:\n    cert: x.pem\n",
			want: []string{`unknown key "mqtt.tls.cert"`},
		},
		{
			name: "unknown top-level yaml key",
			yaml: "datadir: /tmp\n",
			want: []string{`unknown key "datadir"`},
		},
		{
			name: "every unknown key is reported",
			yaml: "foo: 1\nhttp:\n  port: 80\n",
			want: []string{`unknown key "foo"`, `unknown key "http.port"`},
		},
		{
			name: "scalar for a section",
			yaml: "mqtt: 5\n",
			want: []string{`invalid value for "mqtt"`},
		},
		{
			name: "mapping for a setting",
			yaml: "http:\n  addr:\n    host: localhost\n",
			want: []string{`invalid value for "http.addr"`},
		},
		{
			name: "int that is not a number",
			yaml: "limits:\n  max_message_bytes: abc\n",
			want: []string{`config: invalid value for "limits.max_message_bytes"`},
		},
		{
			name: "duration without a unit",
			yaml: "mqtt:\n  session_expiry: 3600\n",
			want: []string{`invalid value for "mqtt.session_expiry"`},
		},
		{
			name: "list of mappings",
			yaml: "mqtt:\n  ws_allowed_origins:\n    - {a: b}\n",
			want: []string{`invalid value for "mqtt.ws_allowed_origins"`},
		},
		{
			name: "malformed yaml",
			yaml: "mqtt: [\n",
			want: []string{"config: parse"},
		},
		{
			name: "ws_path without slash",
			yaml: "mqtt:\n  ws_path: mqtt\n",
			want: []string{`invalid value for "mqtt.ws_path"`},
		},
		{
			name: "tls_addr without cert and key",
			yaml: "mqtt:\n  tls_addr: :8883\n",
			want: []string{`invalid value for "mqtt.tls_cert"`, `invalid value for "mqtt.tls_key"`},
		},
		{
			name: "unknown env variable",
			env:  map[string]string{"MQCHAT_HTTP_ADR": ":80"},
			want: []string{"MQCHAT_HTTP_ADR"},
		},
		{
			name: "bad int from env",
			env:  map[string]string{"MQCHAT_LIMITS_MAX_MESSAGE_BYTES": "abc"},
			want: []string{`invalid value for "limits.max_message_bytes"`, "MQCHAT_LIMITS_MAX_MESSAGE_BYTES"},
		},
		{
			name: "bad bool from env",
			env:  map[string]string{"MQCHAT_AUTH_ALLOW_ANONYMOUS": "maybe"},
			want: []string{`invalid value for "auth.allow_anonymous"`},
		},
		{
			name: "bad duration from env",
			env:  map[string]string{"MQCHAT_AUTH_ACCESS_TTL": "30"},
			want: []string{`invalid value for "auth.access_ttl"`},
		},
		{
			name: "env value failing validation",
			env:  map[string]string{"MQCHAT_MQTT_ADDR": "1883"},
			want: []string{`invalid value for "mqtt.addr"`},
		},
		{
			name: "flag value failing validation",
			args: []string{"--auth.bcrypt_cost=3"},
			want: []string{`invalid value for "auth.bcrypt_cost"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			if tt.yaml != "" {
				path = writeFile(t, tt.yaml)
			}
			fs := pflag.NewFlagSet("chatd", pflag.ContinueOnError)
			RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, fs)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load(missing) = %v, want an error naming %s", err, path)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		key    string // the key the error must name; "" means valid
		mutate func(c *Config)
	}{
		{"", func(*Config) {}},
		{"", func(c *Config) { c.MQTT.WSAddr = "" }},
		{"", func(c *Config) { c.HTTP.Addr = "[::1]:0" }},
		{"", func(c *Config) { c.MQTT.ClientWritesPending = 16 }},
		{"", func(c *Config) { c.MQTT.ClientWritesPending = 65536 }},
		{"", func(c *Config) { c.MQTT.SessionExpiry = 4294967295 * time.Second }},
		{"", func(c *Config) { c.Auth.AccessTTL = time.Minute }},
		{"", func(c *Config) { c.Limits.MaxMessageBytes = 16 << 20 }},
		{"", func(c *Config) { c.NodeID = 1023 }},
		{"", func(c *Config) { c.Store.Relational, c.Store.Postgres.DSN = "postgres", "postgres://db/chat" }},
		{"", func(c *Config) { c.Store.Messages, c.Store.Cassandra.Hosts = "cassandra", []string{"c1", "c2:9042"} }},
		{"", func(c *Config) { c.Store.Cassandra.Consistency = "quorum" }},
		{"store.relational", func(c *Config) { c.Store.Relational = "cassandra" }},
		{"store.messages", func(c *Config) { c.Store.Messages = "mysql" }},
		{"store.postgres.dsn", func(c *Config) { c.Store.Messages = "postgres" }},
		{"store.cassandra.hosts", func(c *Config) { c.Store.Messages = "cassandra" }},
		{"store.cassandra.hosts", func(c *Config) { c.Store.Cassandra.Hosts = []string{" "} }},
		{"store.cassandra.keyspace", func(c *Config) { c.Store.Cassandra.Keyspace = "chat-prod" }},
		{"store.cassandra.consistency", func(c *Config) { c.Store.Cassandra.Consistency = "SERIAL" }},
		{"store.cassandra.username", func(c *Config) { c.Store.Cassandra.Username = "chatd" }},
		{"", func(c *Config) {
			c.Blob.Backend, c.Blob.S3.Endpoint, c.Blob.S3.Bucket = "s3", "s3.example.com:9000", "chat"
		}},
		{"blob.backend", func(c *Config) { c.Blob.Backend = "gcs" }},
		{"", func(c *Config) { c.Archive.Enabled = true }},
		{"archive.enabled", func(c *Config) { c.Archive.Enabled, c.Cluster.Enabled = true, true }},
		{"attachments.max_bytes", func(c *Config) { c.Attachments.MaxBytes = 0 }},
		{"attachments.daily_bytes", func(c *Config) { c.Attachments.DailyBytes = c.Attachments.MaxBytes - 1 }},
		{"attachments.unreferenced_ttl", func(c *Config) { c.Attachments.UnreferencedTTL = 0 }},
		{"blob.s3.endpoint", func(c *Config) { c.Blob.Backend, c.Blob.S3.Bucket = "s3", "chat" }},
		{"blob.s3.endpoint", func(c *Config) {
			c.Blob.Backend, c.Blob.S3.Endpoint, c.Blob.S3.Bucket = "s3", "https://s3.example.com", "chat"
		}},
		{"blob.s3.bucket", func(c *Config) { c.Blob.Backend, c.Blob.S3.Endpoint = "s3", "s3.example.com" }},
		{"blob.s3.access_key", func(c *Config) {
			c.Blob.Backend, c.Blob.S3.Endpoint, c.Blob.S3.Bucket, c.Blob.S3.SecretKey = "s3", "s3.example.com", "chat", "s3-secret"
		}},
		{"data_dir", func(c *Config) { c.DataDir = "" }},
		{"node_id", func(c *Config) { c.NodeID = -1 }},
		{"node_id", func(c *Config) { c.NodeID = 1024 }},
		{"log.level", func(c *Config) { c.Log.Level = "verbose" }},
		{"log.format", func(c *Config) { c.Log.Format = "xml" }},
		{"mqtt.addr", func(c *Config) { c.MQTT.Addr = "" }},
		{"mqtt.addr", func(c *Config) { c.MQTT.Addr = "localhost" }},
		{"mqtt.addr", func(c *Config) { c.MQTT.Addr = ":99999" }},
		{"mqtt.ws_addr", func(c *Config) { c.MQTT.WSAddr = "8083" }},
		{"mqtt.ws_path", func(c *Config) { c.MQTT.WSPath = "mqtt" }},
		{"mqtt.ws_path", func(c *Config) { c.MQTT.WSPath = "" }},
		{"mqtt.ws_allowed_origins", func(c *Config) { c.MQTT.WSAllowedOrigins = []string{""} }},
		{"mqtt.tls_addr", func(c *Config) { c.MQTT.TLSAddr = "x"; c.MQTT.TLSCert = "c"; c.MQTT.TLSKey = "k" }},
		{"mqtt.tls_cert", func(c *Config) { c.MQTT.TLSAddr = ":8883"; c.MQTT.TLSKey = "k" }},
		{"mqtt.tls_key", func(c *Config) { c.MQTT.TLSAddr = ":8883"; c.MQTT.TLSCert = "c" }},
		{"mqtt.tls_cert", func(c *Config) { c.MQTT.TLSCert = "c" }},
		{"mqtt.tls_key", func(c *Config) { c.MQTT.TLSKey = "k" }},
		{"mqtt.client_writes_pending", func(c *Config) { c.MQTT.ClientWritesPending = 15 }},
		{"mqtt.client_writes_pending", func(c *Config) { c.MQTT.ClientWritesPending = 65537 }},
		{"mqtt.max_inflight", func(c *Config) { c.MQTT.MaxInflight = 0 }},
		{"mqtt.max_inflight", func(c *Config) { c.MQTT.MaxInflight = 65536 }},
		{"mqtt.receive_maximum", func(c *Config) { c.MQTT.ReceiveMaximum = 0 }},
		{"mqtt.receive_maximum", func(c *Config) { c.MQTT.ReceiveMaximum = 65536 }},
		{"mqtt.session_expiry", func(c *Config) { c.MQTT.SessionExpiry = -time.Second }},
		{"mqtt.session_expiry", func(c *Config) { c.MQTT.SessionExpiry = 4294967296 * time.Second }},
		{"mqtt.keepalive_max", func(c *Config) { c.MQTT.KeepAliveMax = -time.Second }},
		{"mqtt.keepalive_max", func(c *Config) { c.MQTT.KeepAliveMax = 65536 * time.Second }},
		{"http.addr", func(c *Config) { c.HTTP.Addr = "" }},
		{"http.addr", func(c *Config) { c.HTTP.Addr = ":http" }},
		{"", func(c *Config) { c.HTTP.PprofAddr = "127.0.0.1:6060" }},
		{"", func(c *Config) { c.HTTP.PprofAddr = "localhost:0" }},
		{"http.pprof_addr", func(c *Config) { c.HTTP.PprofAddr = ":6060" }},
		{"http.pprof_addr", func(c *Config) { c.HTTP.PprofAddr = "10.0.0.1:6060" }},
		{"http.pprof_addr", func(c *Config) { c.HTTP.PprofAddr = "6060" }},
		{"", func(c *Config) { c.HTTP.MetricsAddr = ":9090" }},
		{"", func(c *Config) { c.HTTP.MetricsAddr, c.HTTP.PprofAddr = "127.0.0.1:6060", "127.0.0.1:6060" }},
		{"http.metrics_addr", func(c *Config) { c.HTTP.MetricsAddr = ":8080" }},
		{"http.metrics_addr", func(c *Config) { c.HTTP.MetricsAddr = "9090" }},
		{"", func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://a.example", "http://b.example:8080"} }},
		{"", func(c *Config) { c.HTTP.AllowedOrigins = []string{"*"} }},
		{"http.allowed_origins", func(c *Config) { c.HTTP.AllowedOrigins = []string{"a.example"} }},
		{"http.allowed_origins", func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://a.example/app"} }},
		{"http.allowed_origins", func(c *Config) { c.HTTP.AllowedOrigins = []string{"*", "https://a.example"} }},
		{"http.allowed_origins", func(c *Config) { c.HTTP.AllowedOrigins = []string{" "} }},
		{"http.allowed_origins", func(c *Config) {
			c.HTTP.AllowedOrigins, c.MQTT.WSAllowedOrigins = []string{"*"}, []string{"https://a.example"}
		}},
		{"mqtt.ws_allowed_origins", func(c *Config) { c.MQTT.WSAllowedOrigins = []string{"https://a.example?x"} }},
		{"", func(c *Config) { c.HTTP.TLSCert, c.HTTP.TLSKey = "c", "k" }},
		{"http.tls_cert", func(c *Config) { c.HTTP.TLSCert = "c" }},
		{"http.tls_cert", func(c *Config) { c.HTTP.TLSKey = "k" }},
		{"", func(c *Config) { c.MQTT.WSTLSCert, c.MQTT.WSTLSKey = "c", "k" }},
		{"mqtt.ws_tls_cert", func(c *Config) { c.MQTT.WSTLSKey = "k" }},
		{"mqtt.ws_tls_cert", func(c *Config) { c.MQTT.WSAddr, c.MQTT.WSTLSCert, c.MQTT.WSTLSKey = "", "c", "k" }},
		{"auth.access_ttl", func(c *Config) { c.Auth.AccessTTL = 59 * time.Second }},
		{"auth.refresh_ttl", func(c *Config) { c.Auth.RefreshTTL = c.Auth.AccessTTL }},
		{"auth.bcrypt_cost", func(c *Config) { c.Auth.BcryptCost = 3 }},
		{"auth.bcrypt_cost", func(c *Config) { c.Auth.BcryptCost = 32 }},
		{"limits.max_message_bytes", func(c *Config) { c.Limits.MaxMessageBytes = 255 }},
		{"limits.max_message_bytes", func(c *Config) { c.Limits.MaxMessageBytes = 16<<20 + 1 }},
		{"limits.max_blocks", func(c *Config) { c.Limits.MaxBlocks = 0 }},
		{"limits.max_blocks", func(c *Config) { c.Limits.MaxBlocks = 100_001 }},
		{"", func(c *Config) { c.Limits.GroupInvites = "auto" }},
		{"limits.group_invites", func(c *Config) { c.Limits.GroupInvites = "Consent" }},
		{"limits.group_invites", func(c *Config) { c.Limits.GroupInvites = "" }},
		{"", func(c *Config) { c.MQTT.MaxFiltersPerSubscribe = c.MQTT.MaxSubscriptions }},
		{"", func(c *Config) { c.Limits.DeviceConnects, c.Limits.DeviceConnectsWindow = 0, 0 }},
		{"", func(c *Config) { c.Limits.GroupOpRate, c.Limits.GroupOpBurst = 0, 0 }},
		{"", func(c *Config) { c.Limits.LookupRate, c.Limits.LookupBurst = 0, 0 }},
		{"mqtt.topic_alias_maximum", func(c *Config) { c.MQTT.TopicAliasMaximum = 0 }},
		{"mqtt.topic_alias_maximum", func(c *Config) { c.MQTT.TopicAliasMaximum = 65536 }},
		{"mqtt.max_topic_bytes", func(c *Config) { c.MQTT.MaxTopicBytes = 63 }},
		{"mqtt.max_topic_bytes", func(c *Config) { c.MQTT.MaxTopicBytes = 65536 }},
		{"mqtt.max_subscriptions", func(c *Config) { c.MQTT.MaxSubscriptions = 0 }},
		{"mqtt.max_filters_per_subscribe", func(c *Config) { c.MQTT.MaxFiltersPerSubscribe = 0 }},
		{"mqtt.max_filters_per_subscribe", func(c *Config) { c.MQTT.MaxFiltersPerSubscribe = c.MQTT.MaxSubscriptions + 1 }},
		{"limits.max_connections_per_user", func(c *Config) { c.Limits.MaxConnectionsPerUser = 0 }},
		{"limits.device_connects", func(c *Config) { c.Limits.DeviceConnects = -1 }},
		{"limits.device_connects_window", func(c *Config) { c.Limits.DeviceConnectsWindow = 500 * time.Millisecond }},
		{"limits.device_connects_window", func(c *Config) { c.Limits.DeviceConnectsWindow = time.Hour + time.Second }},
		{"limits.group_op_rate", func(c *Config) { c.Limits.GroupOpRate = -1 }},
		{"limits.group_op_burst", func(c *Config) { c.Limits.GroupOpBurst = 0 }},
		{"limits.lookup_rate", func(c *Config) { c.Limits.LookupRate = -1 }},
		{"limits.lookup_burst", func(c *Config) { c.Limits.LookupBurst = 0 }},
		{"", func(c *Config) { c.Limits.KeyClaimRate, c.Limits.KeyClaimBurst = 0, 0 }},
		{"", func(c *Config) { c.Limits.PrekeysLow = 0 }},
		{"limits.max_key_bytes", func(c *Config) { c.Limits.MaxKeyBytes = 31 }},
		{"limits.max_key_bytes", func(c *Config) { c.Limits.MaxKeyBytes = 64<<10 + 1 }},
		{"limits.max_one_time_prekeys", func(c *Config) { c.Limits.MaxOneTimePrekeys = 0 }},
		{"limits.prekeys_low", func(c *Config) { c.Limits.PrekeysLow = -1 }},
		{"limits.prekeys_low", func(c *Config) { c.Limits.PrekeysLow = c.Limits.MaxOneTimePrekeys + 1 }},
		{"limits.key_claim_rate", func(c *Config) { c.Limits.KeyClaimRate = -1 }},
		{"limits.key_claim_burst", func(c *Config) { c.Limits.KeyClaimBurst = 0 }},
		{"limits.device_messages_pending", func(c *Config) { c.Limits.DeviceMessagesPending = 0 }},
		{"limits.device_messages_pending", func(c *Config) { c.Limits.DeviceMessagesPending = 1_000_001 }},
		{"presence.grace", func(c *Config) { c.Presence.Grace = -time.Second }},
		{"presence.grace", func(c *Config) { c.Presence.Grace = time.Hour + time.Second }},
		{"presence.visibility_cache_size", func(c *Config) { c.Presence.VisibilityCacheSize = 0 }},
		{"presence.visibility_cache_size", func(c *Config) { c.Presence.VisibilityCacheSize = 16<<20 + 1 }},
		{"presence.publish_workers", func(c *Config) { c.Presence.PublishWorkers = 0 }},
		{"presence.publish_workers", func(c *Config) { c.Presence.PublishWorkers = 257 }},
		{"presence.publish_interval", func(c *Config) { c.Presence.PublishInterval = -time.Millisecond }},
		{"presence.publish_interval", func(c *Config) { c.Presence.PublishInterval = time.Minute + time.Millisecond }},
	}
	for _, tt := range tests {
		c := Default()
		tt.mutate(&c)
		err := c.Validate()
		switch {
		case tt.key == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		case tt.key != "" && err == nil:
			t.Errorf("Validate with bad %s = nil, want an error", tt.key)
		case tt.key != "" && !strings.Contains(err.Error(), `invalid value for "`+tt.key+`"`):
			t.Errorf("Validate with bad %s = %q, does not name the key", tt.key, err)
		}
	}
}

// The deprecated mqtt.ws_allowed_origins adds to http.allowed_origins,
// whichever layer sets each.
func TestAllowedOriginsMergesAlias(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "chatd.yaml")
	yaml := "mqtt:\n  ws_allowed_origins: [https://old.example, https://both.example]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MQCHAT_HTTP_ALLOWED_ORIGINS", "https://new.example,https://both.example")
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://new.example", "https://both.example", "https://old.example"}
	if got := c.AllowedOrigins(); !slices.Equal(got, want) {
		t.Fatalf("AllowedOrigins() = %q, want %q", got, want)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.DataDir = ""
	c.Log.Format = "xml"
	err := c.Validate()
	for _, key := range []string{"data_dir", "log.format"} {
		if err == nil || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("Validate() = %v, want it to name %s", err, key)
		}
	}
}

// The example file is the reference for operators: it must spell out every
// key, each with exactly its default.
func TestExampleFileHoldsEveryDefault(t *testing.T) {
	clearEnv(t)
	const path = "../../configs/chatd.yaml"
	got, err := Load(path, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("%s differs from Default():\n got %+v\nwant %+v", path, got, want)
	}

	byKey := make(map[string]field)
	for _, f := range fields() {
		byKey[f.key] = f
	}
	m, err := readFile(path, byKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range Keys() {
		if _, ok := m[key]; !ok {
			t.Errorf("%s does not set %s", path, key)
		}
	}

	// Every key is preceded by its comment.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasSuffix(trimmed, ":") {
			continue // blank, comment or section header
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("%s:%d: %q has no comment above it", path, i+1, trimmed)
		}
	}
}

func TestDocsListEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, key := range Keys() {
		for _, s := range []string{"`" + key + "`", "`" + envName(key) + "`", "`--" + key + "`"} {
			if !strings.Contains(doc, s) {
				t.Errorf("docs/configuration.md does not mention %s", s)
			}
		}
	}
}

func TestKeys(t *testing.T) {
	keys := Keys()
	if !slices.IsSorted(keys) {
		t.Errorf("Keys() not sorted: %v", keys)
	}
	for _, k := range []string{"data_dir", "http.addr", "mqtt.ws_allowed_origins", "limits.max_message_bytes", "auth.jwt_secret"} {
		if !slices.Contains(keys, k) {
			t.Errorf("Keys() lacks %s", k)
		}
	}
	// One leaf per scalar field of Config: catches a field left out of the walk.
	if n := countLeaves(reflect.TypeFor[Config]()); len(keys) != n {
		t.Errorf("Keys() has %d keys, Config has %d leaf fields", len(keys), n)
	}
	envs := make(map[string]string)
	for _, k := range keys {
		e := envName(k)
		if prev, ok := envs[e]; ok {
			t.Errorf("keys %s and %s share the variable %s", prev, k, e)
		}
		envs[e] = k
		if usage(k) == "" {
			t.Errorf("key %s has no usage text", k)
		}
	}
	if got := envName("mqtt.ws_allowed_origins"); got != "MQCHAT_MQTT_WS_ALLOWED_ORIGINS" {
		t.Errorf("envName = %s", got)
	}
}

func countLeaves(t reflect.Type) int {
	n := 0
	for i := range t.NumField() {
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Struct {
			n += countLeaves(ft)
		} else {
			n++
		}
	}
	return n
}

func TestRegisterFlags(t *testing.T) {
	fs := pflag.NewFlagSet("chatd", pflag.ContinueOnError)
	RegisterFlags(fs)
	for _, k := range Keys() {
		f := fs.Lookup(k)
		if f == nil {
			t.Errorf("no flag --%s", k)
			continue
		}
		if f.Usage == "" {
			t.Errorf("flag --%s has no usage", k)
		}
	}
	if d := fs.Lookup("mqtt.session_expiry").DefValue; d != (7 * 24 * time.Hour).String() {
		t.Errorf("--mqtt.session_expiry default = %s", d)
	}
	// Flags that are not config keys belong to the caller and are ignored.
	fs.String("config", "", "config file")
	if err := fs.Parse([]string{"--config=x.yaml"}); err != nil {
		t.Fatal(err)
	}
	clearEnv(t)
	if _, err := Load("", fs); err != nil {
		t.Errorf("Load with a foreign flag: %v", err)
	}
}

func TestLogValueRedactsSecret(t *testing.T) {
	c := Default()
	c.Auth.JWTSecret = "hunter2-very-secret"
	c.Store.Postgres.DSN = "postgres://chatd:pg-password@db/chat"
	c.Store.Cassandra.Password = "cassandra-password"
	c.Blob.S3.SecretKey = "s3-secret-key"
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	for _, secret := range []string{c.Auth.JWTSecret, "pg-password", c.Store.Cassandra.Password, c.Blob.S3.SecretKey} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q leaked into log: %s", secret, out)
		}
	}
	for _, want := range []string{`"jwt_secret":"[redacted]"`, `"http":{"addr":":8080","pprof_addr":"","metrics_addr":""`, `"session_expiry":604800000000000`, `"secret_key":"[redacted]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %s lacks %s", out, want)
		}
	}
}

// TestLoadReportsEveryLayersProblems: a problem in one layer does not hide
// those of the others, nor what validating the merged result finds; a key
// whose value could not be read is reported once, not again by validation
// of the default left in its place.
func TestLoadReportsEveryLayersProblems(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string // "-": a file that does not exist
		env      map[string]string
		args     []string
		want     []string // each in the error
		wantOnce string   // in the error exactly once
	}{
		{
			name: "file, env, flag and validation",
			yaml: "mqtt:\n  adr: \":1\"\nlimits:\n  max_message_bytes: lots\n",
			env:  map[string]string{"MQCHAT_LOG_LEVEL": "loud", "MQCHAT_NOPE": "1"},
			args: []string{"--node_id=5000", "--mqtt.ws_path=mqtt"},
			want: []string{`"mqtt.adr"`, `"limits.max_message_bytes"`, `"log.level"`, "MQCHAT_NOPE",
				`"node_id"`, `"mqtt.ws_path"`},
		},
		{
			name: "missing file does not hide the environment",
			yaml: "-",
			env:  map[string]string{"MQCHAT_LOG_FORMAT": "xml"},
			want: []string{"nope.yaml", `"log.format"`},
		},
		{
			name: "unparsable file does not hide flags",
			yaml: "mqtt: [\n",
			args: []string{"--node_id=5000"},
			want: []string{"config: parse", `"node_id"`},
		},
		{
			// The file's 3 stays when the environment's value cannot be
			// read: one problem with the key, not also a complaint about
			// the value the unread one would have replaced.
			name:     "unreadable value reported once",
			yaml:     "auth:\n  bcrypt_cost: 3\n",
			env:      map[string]string{"MQCHAT_AUTH_BCRYPT_COST": "many"},
			want:     []string{`"auth.bcrypt_cost"`},
			wantOnce: `"auth.bcrypt_cost"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			switch tt.yaml {
			case "":
			case "-":
				path = filepath.Join(t.TempDir(), "nope.yaml")
			default:
				path = writeFile(t, tt.yaml)
			}
			fs := pflag.NewFlagSet("chatd", pflag.ContinueOnError)
			RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, fs)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %s:\n%v", w, err)
				}
			}
			if tt.wantOnce != "" {
				if n := strings.Count(err.Error(), tt.wantOnce); n != 1 {
					t.Errorf("error names %s %d times, want once:\n%v", tt.wantOnce, n, err)
				}
			}
		})
	}
}
