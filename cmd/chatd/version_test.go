package main

import (
	"runtime/debug"
	"testing"
)

func TestDescribeBuild(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"checkout without vcs stamping", "(devel)", nil, "devel go1.26.0 linux/amd64"},
		{"installed release", "v1.4.0", nil, "v1.4.0 go1.26.0 linux/amd64"},
		{"checkout", "(devel)", vcs("vcs", "git", "vcs.revision", "4afc3888afd2", "vcs.time", "2026-12-01T17:00:00Z", "vcs.modified", "false"),
			"devel commit 4afc3888afd2 (2026-12-01T17:00:00Z) go1.26.0 linux/amd64"},
		{"dirty checkout", "(devel)", vcs("vcs.revision", "4afc3888afd2", "vcs.time", "2026-12-01T17:00:00Z", "vcs.modified", "true"),
			"devel commit 4afc3888afd2 (2026-12-01T17:00:00Z) with uncommitted changes go1.26.0 linux/amd64"},
		{"tagged pseudo-version", "v1.4.1-0.20261201170000-4afc3888afd2", vcs("vcs.revision", "4afc3888afd2"),
			"v1.4.1-0.20261201170000-4afc3888afd2 commit 4afc3888afd2 go1.26.0 linux/amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/mqchat/mqchat", Version: tt.version}, Settings: tt.settings}
			if got := describeBuild(info, "linux/amd64"); got != tt.want {
				t.Errorf("describeBuild = %q, want %q", got, tt.want)
			}
		})
	}
}
