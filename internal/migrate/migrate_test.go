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
	const latest = 3
	check(latest, 7)
	if err := r.Up(); err != nil {
		t.Fatalf("Up with nothing pending: %v", err)
	}
	// Later migrations change tables without adding any: walk them back
	// one by one to the first.
	for v, _, err := r.Version(); err == nil && v > 1; v, _, err = r.Version() {
		if err := r.Down(); err != nil {
			t.Fatal(err)
		}
	}
	check(1, 7)
	if err := r.Down(); err != nil {
		t.Fatal(err)
	}
	check(0, 0)
	if err := r.Up(); err != nil {
		t.Fatal(err)
	}
	check(latest, 7)
}
