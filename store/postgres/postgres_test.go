package postgres_test

import (
	"os"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/pgtest"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/postgres"
	"github.com/mqchat/mqchat/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openTest(t *testing.T, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), pgtest.DSN(t), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return openTest(t, postgres.Options{Now: now})
	})
}
