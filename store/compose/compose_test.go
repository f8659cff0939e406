package compose_test

import (
	"os"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/pgtest"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/compose"
	"github.com/mqchat/mqchat/store/pebble"
	"github.com/mqchat/mqchat/store/postgres"
	"github.com/mqchat/mqchat/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A composed store must behave as one store: PostgreSQL for the relational
// half and Pebble for the messages, the same split chatd makes with
// store.relational=postgres and store.messages=pebble.
func TestConformancePostgresWithPebbleMessages(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		pg, err := postgres.Open(t.Context(), pgtest.DSN(t), postgres.Options{Now: now})
		if err != nil {
			t.Fatalf("postgres.Open: %v", err)
		}
		pb, err := pebble.Open(t.TempDir(), pebble.Options{Now: now})
		if err != nil {
			_ = pg.Close()
			t.Fatalf("pebble.Open: %v", err)
		}
		s := compose.New(pg, pb)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}
