package migrate_test

import (
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/internal/migrate"
	"github.com/mqchat/mqchat/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The template database already holds the schema; down and up must walk it
// back to nothing and forward again.
func TestPostgresDownUp(t *testing.T) {
	dsn := pgtest.DSN(t)
	r, err := migrate.Postgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check := func(wantVersion uint, wantTables int) {
		t.Helper()
		v, dirty, err := r.Version()
		if err != nil || v != wantVersion || dirty {
			t.Fatalf("Version = %d, dirty %v, %v; want %d", v, dirty, err, wantVersion)
		}
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(t.Context())
		var n int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables
			WHERE schemaname = 'public' AND tablename <> 'schema_migrations'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != wantTables {
			t.Fatalf("%d tables at version %d, want %d", n, wantVersion, wantTables)
		}
	}
	// Each migration's version and the tables there; Down walks them back.
	// sessions (2), account state (3, columns only), profiles (4), consent
	// (5: four tables), end-to-end encryption (6: five tables), message
	// changes (7: one table and columns), attachments (8: three tables),
	// retention (9: two tables)
	const latest, latestTables = 9, 24
	steps := []struct {
		version uint
		tables  int
	}{{8, 22}, {7, 19}, {6, 18}, {5, 13}, {4, 9}, {3, 8}, {2, 8}, {1, 7}, {0, 0}}
	check(latest, latestTables)
	if err := r.Up(); err != nil {
		t.Fatalf("Up with nothing pending: %v", err)
	}
	for _, want := range steps {
		if err := r.Down(); err != nil {
			t.Fatal(err)
		}
		check(want.version, want.tables)
	}
	if err := r.Up(); err != nil {
		t.Fatal(err)
	}
	check(latest, latestTables)
}
