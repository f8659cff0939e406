package migrate

import (
	"fmt"

	cassmigrate "github.com/golang-migrate/migrate/v4/database/cassandra"

	"github.com/mqchat/mqchat/migrations"
	"github.com/mqchat/mqchat/store/cassandra"
)

// Cassandra opens a runner on c.Keyspace, creating the keyspace first when
// it does not exist with SimpleStrategy and replication factor 1: right
// for a development node. Production clusters create it beforehand with
// NetworkTopologyStrategy and their replication factors; it is then left
// as it is.
//
// golang-migrate's Cassandra driver locks only within one process, so
// with several nodes run `chatd migrate up` once from the deployment
// rather than store.migrate_on_start on every node (the statements are
// IF NOT EXISTS, so a race repeats work but breaks nothing).
func Cassandra(c cassandra.Config) (*Runner, error) {
	if err := createKeyspace(c); err != nil {
		return nil, err
	}
	cl, err := cassandra.NewCluster(c, c.Keyspace)
	if err != nil {
		return nil, err
	}
	sess, err := cl.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("migrate cassandra: connect: %w", err)
	}
	drv, err := cassmigrate.WithInstance(sess, &cassmigrate.Config{
		KeyspaceName: c.Keyspace, MultiStatementEnabled: true,
	})
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("migrate cassandra: %w", err)
	}
	return newRunner("cassandra", migrations.Cassandra(), drv, "cassandra")
}

func createKeyspace(c cassandra.Config) error {
	cl, err := cassandra.NewCluster(c, "")
	if err != nil {
		return err
	}
	sess, err := cl.CreateSession()
	if err != nil {
		return fmt.Errorf("migrate cassandra: connect: %w", err)
	}
	defer sess.Close()
	// The keyspace name is validated by config (letters, digits, _).
	err = sess.Query(`CREATE KEYSPACE IF NOT EXISTS ` + c.Keyspace +
		` WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).Exec()
	if err != nil {
		return fmt.Errorf("migrate cassandra: create keyspace %s: %w", c.Keyspace, err)
	}
	return nil
}
