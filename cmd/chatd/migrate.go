package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqchat/mqchat/internal/migrate"
)

// newMigrate is `chatd migrate up|down|version`: the schemas of the
// configured PostgreSQL and Cassandra backends (Pebble has none).
func newMigrate(load loader) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, revert or show the PostgreSQL/Cassandra schema migrations of the configured backends",
		Long:  "Apply, revert or show the PostgreSQL/Cassandra schema migrations of the configured backends." + hiddenSettingsNote,
	}
	serverFlags(cmd, func(key string) bool { return strings.HasPrefix(key, "store.") })
	run := func(use, short string, fn func(c *cobra.Command, r *migrate.Runner) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				cfg, _, err := load(c)
				if err != nil {
					return err
				}
				runners, err := migrate.ForConfig(cfg.Store)
				if err != nil {
					return err
				}
				if len(runners) == 0 {
					fmt.Fprintln(c.OutOrStdout(), "nothing to migrate: store.relational and store.messages are pebble")
					return nil
				}
				for _, r := range runners {
					if err == nil {
						err = fn(c, r)
					}
					err = errors.Join(err, r.Close())
				}
				return err
			},
		}
	}
	version := func(c *cobra.Command, r *migrate.Runner) error {
		v, dirty, err := r.Version()
		if err != nil {
			return err
		}
		state := ""
		if dirty {
			state = " (dirty: a migration failed half-way; fix the schema, then rerun)"
		}
		fmt.Fprintf(c.OutOrStdout(), "%s: version %d%s\n", r.Name(), v, state)
		return nil
	}
	cmd.AddCommand(
		run("up", "Apply every pending migration", func(c *cobra.Command, r *migrate.Runner) error {
			if err := r.Up(); err != nil {
				return err
			}
			return version(c, r)
		}),
		run("down", "Revert the most recent migration (repeat to go further)", func(c *cobra.Command, r *migrate.Runner) error {
			if err := r.Down(); err != nil {
				return err
			}
			return version(c, r)
		}),
		run("version", "Show the applied migration version", version),
	)
	return cmd
}
