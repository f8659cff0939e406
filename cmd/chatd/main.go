// Command chatd is the mqchat server: an embedded MQTT broker with durable
// chat, accounts and a REST API in one binary.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/config"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "chatd",
		Short:         "mqchat server: embedded MQTT broker with durable chat",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.PersistentFlags().StringVar(&cfgPath, "config", "", "YAML config file (see configs/chatd.yaml)")
	load := func(cmd *cobra.Command) (config.Config, *slog.Logger, error) {
		cfg, err := config.Load(cfgPath, cmd.Flags())
		if err != nil {
			return cfg, nil, err
		}
		return cfg, newLogger(cfg.Log, os.Stderr), nil
	}
	root.AddCommand(newServe(load), newUser(load), newMigrate(load), newArchive(load), newBackup(load), newRestore(), newVersion())
	return root
}

// serverFlags registers every configuration key as a flag of cmd and its
// subcommands. serve shows them all; the other commands accept them (a
// store or data dir given on the command line must reach them) but show
// only the keys named in shown, so their help is about what they do.
func serverFlags(cmd *cobra.Command, shown func(key string) bool) {
	fs := cmd.PersistentFlags()
	config.RegisterFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" && !shown(f.Name) {
			_ = fs.MarkHidden(f.Name)
		}
	})
}

// hiddenSettingsNote ends the help of commands that hide most settings.
const hiddenSettingsNote = `

Every server setting is accepted too, from --config, MQCHAT_* variables or
--key=value flags (listed by chatd serve --help); use the server's, so that
the command works on the server's data dir and store.`

type loader func(cmd *cobra.Command) (config.Config, *slog.Logger, error)

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config.Load
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newServe(load loader) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load(cmd)
			if err != nil {
				return err
			}
			// Before the first log line: a taken port or data dir is then
			// the one line the operator reads.
			if err := app.Preflight(cfg); err != nil {
				return err
			}
			gin.SetMode(gin.ReleaseMode)
			log.Info("starting chatd", "config", cfg)
			a, err := app.New(cfg, log)
			if err != nil {
				return err
			}
			if err := a.Start(); err != nil {
				_ = a.Shutdown(context.Background())
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reloadOnHangup(ctx, a, log)
			<-ctx.Done()
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return a.Shutdown(sctx)
		},
	}
	serverFlags(cmd, func(string) bool { return true })
	return cmd
}

// reloadOnHangup re-reads the TLS certificates on every SIGHUP until ctx
// ends: the usual way to tell a server its renewed certificate is in place.
func reloadOnHangup(ctx context.Context, a *app.App, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading TLS certificates")
				// Failures are logged by the reload, naming the files.
				_ = a.ReloadTLS()
			}
		}
	}()
}

func newUser(load loader) *cobra.Command {
	user := &cobra.Command{
		Use: "user", Short: "Manage accounts (works while the server runs)",
		Long: `Manage accounts. While the server runs, the commands reach it through the
admin socket in its data dir (data_dir/admin.sock); with no server running
they open the data dir themselves, and say so.` + hiddenSettingsNote,
		// Without this a mistyped subcommand printed the help and exited 0,
		// which scripts took for success.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for \"chatd user\" (see chatd user --help)", args[0])
			}
			return fmt.Errorf("missing command: chatd user create|token|list|disable|enable|delete (see chatd user --help)")
		},
	}
	serverFlags(user, func(key string) bool { return key == "data_dir" })
	var password string
	var mkdir bool
	create := &cobra.Command{
		Use:   "create USERNAME",
		Short: "Create an account; prints its id (and the password when generated)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			generated := password == ""
			if generated {
				b := make([]byte, 18)
				if _, err := rand.Read(b); err != nil {
					return err
				}
				password = base64.RawURLEncoding.EncodeToString(b)
			}
			return withOperator(cmd, load, app.OperatorOptions{Create: mkdir}, func(ctx context.Context, op app.Operator) error {
				u, err := op.CreateUser(ctx, args[0], password)
				if err != nil {
					return fmt.Errorf("user %q: %w", args[0], err)
				}
				out := map[string]any{"user_id": u.ID, "username": u.Username}
				if generated {
					out["password"] = password
				}
				return printJSON(cmd.OutOrStdout(), out)
			})
		},
	}
	create.Flags().StringVar(&password, "password", "", "password (generated and printed when empty)")
	create.Flags().BoolVar(&mkdir, "create", false, "with no server running, make the data dir when it does not exist (a new node: its own accounts and JWT secret)")

	var ttl time.Duration
	var format string
	token := &cobra.Command{
		Use:   "token USERNAME",
		Short: "Issue tokens for an account (for devices and tests without a UI)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "shell" {
				return fmt.Errorf("--format must be json or shell")
			}
			return withOperator(cmd, load, app.OperatorOptions{}, func(ctx context.Context, op app.Operator) error {
				t, err := op.IssueTokens(ctx, args[0], ttl)
				if err != nil {
					return fmt.Errorf("user %q: %w", args[0], err)
				}
				if format == "shell" {
					_, err := fmt.Fprintf(cmd.OutOrStdout(), "USER_ID=%s\nTOKEN=%s\n", t.UserID, t.AccessToken)
					return err
				}
				return printJSON(cmd.OutOrStdout(), t)
			})
		},
	}
	token.Flags().DurationVar(&ttl, "ttl", 0, "access token lifetime (default auth.access_ttl)")
	token.Flags().StringVar(&format, "format", "json", "output: json, or shell (USER_ID=… TOKEN=… for eval)")
	user.AddCommand(create, token)
	user.AddCommand(newUserLifecycle(load)...)
	return user
}

// withOperator runs fn on the server configured for cmd, through its admin
// socket, or on its data dir when no server runs (said on stderr).
func withOperator(cmd *cobra.Command, load loader, opts app.OperatorOptions, fn func(context.Context, app.Operator) error) error {
	cfg, log, err := load(cmd)
	if err != nil {
		return err
	}
	opts.Notice = cmd.ErrOrStderr()
	op, closeOp, err := app.OpenOperator(cfg, log, opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	return errors.Join(fn(ctx, op), closeOp())
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
