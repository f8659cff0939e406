// Package migrate applies the embedded schema migrations (package
// migrations) to PostgreSQL and Cassandra with golang-migrate. chatd's
// migrate command and, when store.migrate_on_start is set, its start-up
// use it; test helpers use it to build their template databases.
package migrate

import (
	"errors"
	"fmt"
	"io/fs"

	gomigrate "github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// Runner applies one database's migrations.
type Runner struct {
	name string
	m    *gomigrate.Migrate
}

// newRunner takes ownership of db: closing the runner closes it.
func newRunner(name string, files fs.FS, db database.Driver, driverName string) (*Runner, error) {
	src, err := iofs.New(files, ".")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("migrate %s: source: %w", name, err), db.Close())
	}
	m, err := gomigrate.NewWithInstance("iofs", src, driverName, db)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("migrate %s: %w", name, err), src.Close(), db.Close())
	}
	return &Runner{name: name, m: m}, nil
}

// Up applies every migration not applied yet; none left is not an error.
func (r *Runner) Up() error {
	if err := r.m.Up(); err != nil && !errors.Is(err, gomigrate.ErrNoChange) {
		return fmt.Errorf("migrate %s up: %w", r.name, err)
	}
	return nil
}

// Down reverts the most recent migration only: dropping a whole schema
// takes a deliberate repetition, not a single command.
func (r *Runner) Down() error {
	if err := r.m.Steps(-1); err != nil {
		return fmt.Errorf("migrate %s down: %w", r.name, err)
	}
	return nil
}

// Version reports the applied version (0 when none) and whether a failed
// migration left the schema dirty.
func (r *Runner) Version() (uint, bool, error) {
	v, dirty, err := r.m.Version()
	if errors.Is(err, gomigrate.ErrNilVersion) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("migrate %s version: %w", r.name, err)
	}
	return v, dirty, nil
}

// Name is the database kind, for messages.
func (r *Runner) Name() string { return r.name }

// Close releases the connections.
func (r *Runner) Close() error {
	srcErr, dbErr := r.m.Close()
	return errors.Join(srcErr, dbErr)
}
