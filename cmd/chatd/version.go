package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version describes this binary from what the Go toolchain recorded in it:
// the module version (a tag when installed with go install, "devel" for a
// build from a checkout) and the commit it was built from, with its time
// and whether the tree had uncommitted changes.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel (no build information) " + runtime.Version()
	}
	return describeBuild(info, runtime.GOOS+"/"+runtime.GOARCH)
}

// describeBuild is version's text for info, on platform. A build with
// -buildvcs=false (or outside a checkout) records no commit: none is shown.
func describeBuild(info *debug.BuildInfo, platform string) string {
	v := strings.Trim(info.Main.Version, "()")
	if v == "" {
		v = "devel"
	}
	var rev, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	out := v
	if rev != "" {
		out += " commit " + rev
		if at != "" {
			out += " (" + at + ")"
		}
		if modified {
			out += " with uncommitted changes"
		}
	}
	return fmt.Sprintf("%s %s %s", out, info.GoVersion, platform)
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the commit this binary was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "chatd", version())
			return err
		},
	}
}
