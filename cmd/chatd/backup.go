package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqchat/mqchat/internal/app"
)

func newBackup(load loader) *cobra.Command {
	var to string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "backup --to DIR",
		Short: "Copy the embedded store, blob files and JWT secret into DIR (works while the server runs)",
		Long: `Copy the node's embedded data into DIR, which must not exist or be empty:
a consistent checkpoint of the Pebble store, the fs blob backend's files
(hard links where possible) and the generated JWT secret, then manifest.json.
While the server runs it takes the checkpoint itself, through the admin
socket, and keeps serving; with no server running the data dir is opened
here. PostgreSQL, Cassandra and S3 are backed up with their own tools
(docs/backup.md).` + hiddenSettingsNote,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return errors.New("--to is required")
			}
			cfg, log, err := load(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			m, err := app.Backup(ctx, cfg, log, to, version(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), m)
		},
	}
	serverFlags(cmd, func(key string) bool { return key == "data_dir" })
	cmd.Flags().StringVar(&to, "to", "", "target directory (new or empty)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	return cmd
}

func newRestore() *cobra.Command {
	var from, dataDir string
	cmd := &cobra.Command{
		Use:   "restore --from DIR --data_dir NEW",
		Short: "Copy a backup into a new data dir (run with no server on it)",
		Long: `Copy the backup in DIR (made by chatd backup) into the data dir NEW, which
must not exist or be empty; then start chatd serve with --data_dir NEW.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || dataDir == "" {
				return errors.New("--from and --data_dir are required")
			}
			m, err := app.Restore(cmd.Context(), from, dataDir)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), m)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "backup directory")
	cmd.Flags().StringVar(&dataDir, "data_dir", "", "new data dir (must not exist or be empty)")
	return cmd
}
