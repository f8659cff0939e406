package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/services/archive"
	"github.com/mqchat/mqchat/services/chat"
)

// newArchive is `chatd archive export|import`: a chat's messages to and
// from its archive in the blob store (archive/{chat}/), with the server
// stopped.
func newArchive(load loader) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Export a chat's messages to the blob store, or restore them from it (server stopped)",
		Long: `Export a chat's messages to its archive in the blob store (archive/{chat}/:
gzip'd JSON-lines segments and manifest.json), or restore them into the
configured store. Both open the data dir themselves, so the server must be
stopped.` + hiddenSettingsNote,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for \"chatd archive\" (see chatd archive --help)", args[0])
			}
			return fmt.Errorf("missing command: chatd archive export|import (see chatd archive --help)")
		},
	}
	serverFlags(cmd, func(key string) bool { return key == "data_dir" || key == "blob.backend" })

	var chatID, until string
	export := &cobra.Command{
		Use:   "export --chat ID --until RFC3339",
		Short: "Archive the chat's messages sent before --until, from where its archive ends; nothing is deleted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := time.Parse(time.RFC3339, until)
			if err != nil {
				return fmt.Errorf("--until must be an RFC 3339 time such as 2026-01-31T00:00:00Z: %w", err)
			}
			return withArchive(cmd, load, chatID, func(ctx context.Context, tools app.ArchiveTools) (any, error) {
				return archive.Export(ctx, tools.Store, archive.NewWriter(tools.Blobs), chatID, t)
			})
		},
	}
	export.Flags().StringVar(&chatID, "chat", "", "chat id (g:{group} or a 1:1 chat id)")
	export.Flags().StringVar(&until, "until", "", "export messages sent before this time (RFC 3339)")
	_ = export.MarkFlagRequired("chat")
	_ = export.MarkFlagRequired("until")

	imp := &cobra.Command{
		Use:   "import --chat ID",
		Short: "Restore every archived message of the chat into the store; messages already there are skipped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withArchive(cmd, load, chatID, func(ctx context.Context, tools app.ArchiveTools) (any, error) {
				return archive.Import(ctx, archive.NewReader(tools.Blobs), tools.Store, chatID)
			})
		},
	}
	imp.Flags().StringVar(&chatID, "chat", "", "chat id (g:{group} or a 1:1 chat id)")
	_ = imp.MarkFlagRequired("chat")

	cmd.AddCommand(export, imp)
	return cmd
}

// withArchive runs fn on the configured store and blob store and prints
// its result as JSON.
func withArchive(cmd *cobra.Command, load loader, chatID string, fn func(context.Context, app.ArchiveTools) (any, error)) error {
	cfg, log, err := load(cmd)
	if err != nil {
		return err
	}
	if !chat.ValidChatID(chatID) {
		return fmt.Errorf("--chat %q is not a chat id (d:{user}:{user} or g:{group})", chatID)
	}
	tools, closeTools, err := app.OpenArchive(cfg, log)
	if err != nil {
		return err
	}
	out, err := fn(cmd.Context(), tools)
	if err == nil {
		err = printJSON(cmd.OutOrStdout(), out)
	}
	return errors.Join(err, closeTools())
}
