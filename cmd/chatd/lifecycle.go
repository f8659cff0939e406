package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/services/accounts"
)

// listPage is how many accounts one admin call returns; list walks every page.
const listPage = 500

func newUserLifecycle(load loader) []*cobra.Command {
	var (
		format, after string
		limit         int
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List accounts with their state (active, disabled, deleted), by user id",
		Long: `List accounts with their state (active, disabled, deleted), in user id order:
every account, or a page of them with --limit; the next page starts
--after the last user id printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format must be table or json")
			}
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (every account) or more")
			}
			return withOperator(cmd, load, app.OperatorOptions{}, func(ctx context.Context, op app.Operator) error {
				all := []accounts.Status{}
				for after := after; limit == 0 || len(all) < limit; {
					n := listPage
					if limit > 0 {
						n = min(n, limit-len(all))
					}
					page, err := op.ListUsers(ctx, after, n)
					if err != nil {
						return fmt.Errorf("list users: %w", err)
					}
					all = append(all, page...)
					if len(page) < n {
						break
					}
					after = page[len(page)-1].UserID
				}
				if format == "json" {
					return printJSON(cmd.OutOrStdout(), all)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER_ID\tUSERNAME\tSTATE\tCREATED_AT")
				for _, u := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.UserID, u.Username, u.State, u.CreatedAt.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&format, "format", "table", "output: table, or json")
	list.Flags().IntVar(&limit, "limit", 0, "list at most this many accounts (0: every one)")
	list.Flags().StringVar(&after, "after", "", "start after this user id (the last one of the previous page)")

	change := func(use, short string, run func(ctx context.Context, op app.Operator, who string) (accounts.Status, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " USER",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withOperator(cmd, load, app.OperatorOptions{}, func(ctx context.Context, op app.Operator) error {
					st, err := run(ctx, op, args[0])
					if err != nil {
						return fmt.Errorf("user %q: %w", args[0], err)
					}
					return printJSON(cmd.OutOrStdout(), st)
				})
			},
		}
	}
	disable := change("disable", "Disable an account (username or user id): no login, refresh or CONNECT; its connections are closed at once",
		func(ctx context.Context, op app.Operator, who string) (accounts.Status, error) {
			return op.SetDisabled(ctx, who, true)
		})
	enable := change("enable", "Enable a disabled account again",
		func(ctx context.Context, op app.Operator, who string) (accounts.Status, error) {
			return op.SetDisabled(ctx, who, false)
		})
	var yes bool
	del := change("delete", "Delete an account for good (needs the running server and --yes); its messages stay in their chats",
		func(ctx context.Context, op app.Operator, who string) (accounts.Status, error) {
			if !yes {
				return accounts.Status{}, fmt.Errorf("deletion cannot be undone: add --yes")
			}
			return op.DeleteUser(ctx, who)
		})
	del.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return []*cobra.Command{list, disable, enable, del}
}
