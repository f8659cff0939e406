package migrate

import (
	"errors"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/store/cassandra"
)

// CassandraConfig maps the store.cassandra.* keys to the driver's config.
func CassandraConfig(c config.CassandraConfig) cassandra.Config {
	return cassandra.Config{
		Hosts: c.Hosts, Keyspace: c.Keyspace, Consistency: c.Consistency,
		LocalDC: c.LocalDC, Username: c.Username, Password: c.Password,
	}
}

// ForConfig opens a runner for every schema the configured backends use:
// PostgreSQL when either half is postgres, Cassandra when messages are.
// Pebble needs none, so a default configuration yields no runner.
func ForConfig(sc config.StoreConfig) ([]*Runner, error) {
	var out []*Runner
	fail := func(err error) ([]*Runner, error) {
		for _, r := range out {
			err = errors.Join(err, r.Close())
		}
		return nil, err
	}
	if sc.Relational == "postgres" || sc.Messages == "postgres" {
		r, err := Postgres(sc.Postgres.DSN)
		if err != nil {
			return fail(err)
		}
		out = append(out, r)
	}
	if sc.Messages == "cassandra" {
		r, err := Cassandra(CassandraConfig(sc.Cassandra))
		if err != nil {
			return fail(err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Up applies pending migrations of every configured schema.
func Up(sc config.StoreConfig) error {
	runners, err := ForConfig(sc)
	if err != nil {
		return err
	}
	for _, r := range runners {
		err = errors.Join(err, r.Up())
	}
	for _, r := range runners {
		err = errors.Join(err, r.Close())
	}
	return err
}
