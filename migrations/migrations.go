// Package migrations embeds the schema migrations of the PostgreSQL and
// Cassandra backends, so the chatd binary carries the schema it needs.
// Files follow golang-migrate's naming: {version}_{title}.up|down.{ext}.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql cassandra/*.cql
var files embed.FS

// Postgres holds the .sql migrations at its root.
func Postgres() fs.FS { return sub("postgres") }

// Cassandra holds the .cql migrations at its root.
func Cassandra() fs.FS { return sub("cassandra") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // dir is a constant embedded above
	}
	return f
}
