package e2e

import (
	"strings"
	"testing"
)

// TestClusterConfigRefused: `chatd serve` in cluster mode refuses, before
// serving anything, what would make the nodes disagree or lose data: the
// embedded Pebble store (each node would have its own history) and a JWT
// secret that is not set explicitly (each node would generate its own, so
// a token from one node would fail on the others). The message names the
// key to fix.
func TestClusterConfigRefused(t *testing.T) {
	// Validation comes before any connection, so nothing needs to listen
	// at these addresses.
	const (
		nats = "nats://127.0.0.1:1"
		dsn  = "postgres://mqchat@127.0.0.1:1/mqchat"
	)
	postgres := []string{"--store.relational", "postgres", "--store.messages", "postgres", "--store.postgres.dsn", dsn}
	tests := []struct {
		name string
		args []string
		key  string // the message must name it
	}{
		{"pebble for everything", []string{"--auth.jwt_secret", clusterSecret}, "store.relational"},
		{"pebble for messages", []string{"--auth.jwt_secret", clusterSecret,
			"--store.relational", "postgres", "--store.postgres.dsn", dsn}, "store.messages"},
		{"pebble for accounts", []string{"--auth.jwt_secret", clusterSecret,
			"--store.messages", "postgres", "--store.postgres.dsn", dsn}, "store.relational"},
		{"no jwt secret", postgres, "auth.jwt_secret"},
		{"short jwt secret", append([]string{"--auth.jwt_secret", "only-20-characters!!"}, postgres...), "auth.jwt_secret"},
		{"ttl under three heartbeats", append([]string{"--auth.jwt_secret", clusterSecret,
			"--cluster.heartbeat", "1s", "--cluster.ttl", "2s"}, postgres...), "cluster.ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve",
				"--data_dir", t.TempDir(),
				"--mqtt.addr", "127.0.0.1:0", "--mqtt.ws_addr=", "--http.addr", "127.0.0.1:0",
				"--cluster.enabled=true", "--cluster.nats.url", nats,
			}, tc.args...)
			r := runChatd(t, nil, args...)
			if r.code == 0 {
				t.Fatalf("started with an invalid cluster configuration: %v", r)
			}
			if !strings.Contains(r.stderr, tc.key) {
				t.Fatalf("the refusal does not name %s: %v", tc.key, r)
			}
			// An unknown flag would fail too, naming no key we look for;
			// the cluster keys themselves must be known.
			if strings.Contains(r.stderr, "unknown flag") {
				t.Fatalf("cluster flags unknown: %v", r)
			}
		})
	}
}
