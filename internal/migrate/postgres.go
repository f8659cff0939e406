package migrate

import (
	"fmt"

	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mqchat/mqchat/migrations"
)

// Postgres opens a runner on the database named by dsn (any form pgx
// accepts). golang-migrate takes an advisory lock, so nodes starting
// together with store.migrate_on_start apply each migration once.
func Postgres(dsn string) (*Runner, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("migrate postgres: parse dsn: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	drv, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrate postgres: %w", err)
	}
	return newRunner("postgres", migrations.Postgres(), drv, "pgx5")
}
