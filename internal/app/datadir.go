package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Modes of everything under the data directory. The store's WAL and tables
// hold message plaintext, jwt.secret signs every token: no other local user
// may read them, whatever mode the directory had when it was handed to us
// (systemd's StateDirectory= makes it 0755 unless told otherwise).
const (
	privateDirMode  fs.FileMode = 0o700
	privateFileMode fs.FileMode = 0o600
)

// privateDataDir creates dir as 0700, or makes an existing one 0700 with
// every directory below it 0700 and every other entry 0600. New files stay
// private by the process umask that chatd sets at start-up. When an entry
// cannot be changed (another owner), start-up is refused with the command
// that fixes it, rather than serving with readable plaintext; the one
// exception is a data dir root owned by someone else that others cannot
// write (a volume mount point), which is logged.
func privateDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, privateDirMode); err != nil {
		return fmt.Errorf("app: data dir: %w", err)
	}
	// A data dir that is a symlink (to a bigger disk) is walked at its
	// target; links below it are left alone.
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("app: data dir: %w", err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // chmod would follow it out of the data dir
		}
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		want := privateFileMode
		if info.IsDir() {
			want = privateDirMode
		}
		if info.Mode().Perm() == want {
			return nil
		}
		err = os.Chmod(path, want)
		if err != nil && path == root && errors.Is(err, fs.ErrPermission) && info.Mode().Perm()&0o002 == 0 {
			// A mount point owned by root (a Kubernetes volume with
			// fsGroup, a Docker volume): chatd cannot change it, but the
			// entries below are its own and private, so others see names
			// at most, and cannot replace anything.
			log.Warn("data dir is not 0700 and not chatd's to change; its contents are private",
				"data_dir", root, "mode", info.Mode().Perm().String())
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s is %v and cannot be made %v: %w", path, info.Mode().Perm(), want, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("app: data dir %s must be private to chatd's user: %w; fix it with: chown -R \"$(id -un)\" %s && chmod -R u+rwX,go-rwx %s",
			dir, err, dir, dir)
	}
	return nil
}
