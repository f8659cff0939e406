package app

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestPrivateDataDir: a data dir handed over world-readable (systemd's
// StateDirectory= default, an old install) is made 0700 with every file
// 0600 and every directory 0700, through a symlinked data dir too, and
// without following links out of it.
func TestPrivateDataDir(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, viaLink := range []bool{false, true} {
		name := map[bool]string{false: "Plain", true: "Symlinked"}[viaLink]
		t.Run(name, func(t *testing.T) {
			real := filepath.Join(t.TempDir(), "data")
			entries := map[string]fs.FileMode{
				".":                0o755,
				"jwt.secret":       0o644,
				"store":            0o755,
				"store/000001.log": 0o644,
				"store/deep":       0o777,
				"store/deep/x":     0o666,
			}
			for _, p := range []string{".", "store", "store/deep"} {
				if err := os.MkdirAll(filepath.Join(real, p), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for p, mode := range entries {
				full := filepath.Join(real, p)
				if mode&0o111 == 0 {
					if err := os.WriteFile(full, []byte("plaintext"), mode); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Chmod(full, mode); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(outside, filepath.Join(real, "link")); err != nil {
				t.Fatal(err)
			}
			dir := real
			if viaLink {
				dir = filepath.Join(t.TempDir(), "link-to-data")
				if err := os.Symlink(real, dir); err != nil {
					t.Fatal(err)
				}
			}
			if err := privateDataDir(dir, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatalf("privateDataDir: %v", err)
			}
			for p, mode := range entries {
				want := privateFileMode
				if mode&0o111 != 0 {
					want = privateDirMode
				}
				info, err := os.Stat(filepath.Join(real, p))
				if err != nil {
					t.Fatal(err)
				}
				if got := info.Mode().Perm(); got != want {
					t.Errorf("%s: mode %v, want %v", p, got, want)
				}
			}
			if info, _ := os.Stat(outside); info.Mode().Perm() != 0o644 {
				t.Errorf("file outside the data dir reached through a link: mode %v, want it untouched", info.Mode().Perm())
			}
		})
	}
}

// TestPrivateDataDirCreates: a missing data dir is created 0700.
func TestPrivateDataDirCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	if err := privateDataDir(dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != privateDirMode {
		t.Fatalf("data dir: %v %v, want mode %v", info.Mode(), err, privateDirMode)
	}
}
