package cassandra_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/migrate"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/cassandra"
	"github.com/mqchat/mqchat/store/compose"
	"github.com/mqchat/mqchat/store/pebble"
	"github.com/mqchat/mqchat/store/storetest"
)

// config reads CASSANDRA_HOSTS (comma-separated); the run uses a keyspace
// of its own, so it can share a node with anything else.
func config(t *testing.T) cassandra.Config {
	hosts := os.Getenv("CASSANDRA_HOSTS")
	if hosts == "" {
		t.Skip("CASSANDRA_HOSTS not set: Cassandra conformance skipped (run `make test-cassandra` with Docker)")
	}
	return cassandra.Config{
		Hosts:    strings.Split(hosts, ","),
		Keyspace: fmt.Sprintf("mqchat_test_%d", time.Now().UnixNano()),
		Timeout:  30 * time.Second,
	}
}

// TestConformance runs the suite with Cassandra for messages, dedupe and
// cursors and a Pebble store for the relational aggregates, as chatd
// composes them. Cases run one after another against one keyspace whose
// tables are truncated before each case.
func TestConformance(t *testing.T) {
	cfg := config(t)
	r, err := migrate.Cassandra(cfg)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := r.Up(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	cs, err := cassandra.Open(cfg, cassandra.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := cs.Session().Query("DROP KEYSPACE IF EXISTS " + cfg.Keyspace).Exec(); err != nil {
			t.Errorf("drop keyspace: %v", err)
		}
		_ = cs.Close()
	})
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		for _, table := range []string{"messages", "chat_buckets", "chat_states", "dedupe"} {
			if err := cs.Session().Query("TRUNCATE " + table).Exec(); err != nil {
				t.Fatalf("truncate %s: %v", table, err)
			}
		}
		pb, err := pebble.Open(t.TempDir(), pebble.Options{Now: now})
		if err != nil {
			t.Fatalf("pebble.Open: %v", err)
		}
		t.Cleanup(func() {
			if err := pb.Close(); err != nil {
				t.Errorf("pebble Close: %v", err)
			}
		})
		return compose.New(pb, unclosable{cs})
	})
}

// unclosable keeps the per-case Close of the composed store from closing
// the session the whole run shares.
type unclosable struct{ *cassandra.Store }

func (unclosable) Close() error { return nil }
