package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/compose"
)

// A backup of the embedded default is a directory: store/ (a Pebble
// checkpoint), blobs/ (the fs blob backend's files), jwt.secret, and
// manifest.json, written last, so a directory without a manifest is a
// backup that did not finish and restore refuses it.
const (
	backupManifestName = "manifest.json"
	backupStoreDir     = "store"
	backupBlobsDir     = "blobs"
	jwtSecretName      = "jwt.secret"
)

// BackupManifest says when a backup was taken, by which version, and what it
// holds.
type BackupManifest struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	// Store is true when the embedded store was checkpointed (false when
	// both halves live in PostgreSQL/Cassandra, backed up by their tools).
	Store bool `json:"store"`
	// BlobFiles counts the fs blob backend's files; BlobLinks of them are
	// hard links (the rest copies).
	BlobFiles int  `json:"blob_files"`
	BlobLinks int  `json:"blob_links"`
	JWTSecret bool `json:"jwt_secret"`
	// Skipped names what a restore will not bring back, and why.
	Skipped []string `json:"skipped,omitempty"`
}

// checkpointer is the embedded store's consistent online copy.
type checkpointer interface {
	Checkpoint(ctx context.Context, dir string) error
}

// embeddedCheckpointer finds the Pebble store inside st, nil when neither
// half is embedded.
func embeddedCheckpointer(st store.Store) checkpointer {
	if c, ok := st.(checkpointer); ok {
		return c
	}
	if c, ok := st.(*compose.Store); ok {
		// Both halves are one Pebble store only when openStore returns it
		// uncomposed, so at most one half is embedded here.
		if cp, ok := c.Relational.(checkpointer); ok {
			return cp
		}
		if cp, ok := c.MessageLog.(checkpointer); ok {
			return cp
		}
	}
	return nil
}

// takeBackup copies the node's data into to, which must not exist or be
// empty. The store is checkpointed first, then the blob files are copied:
// a blob written during the backup may be in it without a record pointing at
// it (harmless, unreferenced), but every record in the checkpoint whose blob
// was complete before it finds its file.
func takeBackup(ctx context.Context, cfg config.Config, st store.Store, to, version string) (BackupManifest, error) {
	m := BackupManifest{Time: time.Now().UTC(), Version: version}
	to = absDir(to)
	if err := requireEmptyDir(to); err != nil {
		return m, err
	}
	if err := os.MkdirAll(to, privateDirMode); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	if cp := embeddedCheckpointer(st); cp != nil {
		if err := cp.Checkpoint(ctx, filepath.Join(to, backupStoreDir)); err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		m.Store = true
	}
	dataDir := absDir(cfg.DataDir)
	if cfg.Blob.Backend == "fs" {
		files, links, err := copyTree(ctx, filepath.Join(dataDir, backupBlobsDir), filepath.Join(to, backupBlobsDir), true, skipBlobTemp)
		if err != nil {
			return m, fmt.Errorf("backup: blobs: %w", err)
		}
		m.BlobFiles, m.BlobLinks = files, links
	} else {
		m.Skipped = append(m.Skipped, "blobs: backend "+cfg.Blob.Backend+" (use bucket versioning or replication)")
	}
	if cfg.Auth.JWTSecret == "" {
		ok, err := copyOptionalFile(filepath.Join(dataDir, jwtSecretName), filepath.Join(to, jwtSecretName))
		if err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		m.JWTSecret = ok
	}
	// mochi's session store keeps its database private, so it cannot be
	// checkpointed online; clients reconnect and resubscribe after a restore.
	m.Skipped = append(m.Skipped, "sessions: MQTT session state is not backed up")
	if err := writeManifest(to, m); err != nil {
		return m, err
	}
	return m, nil
}

// skipBlobTemp leaves out the fs backend's staging dir: its files are
// uploads cut short or in flight, never a complete object.
func skipBlobTemp(rel string) bool { return rel == "tmp" }

func writeManifest(dir string, m BackupManifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, backupManifestName+".tmp")
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, backupManifestName)); err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	return syncDir(dir)
}

// Restore copies the backup in from into dataDir, which must not exist or be
// empty: restoring over a live data dir would mix two histories.
func Restore(ctx context.Context, from, dataDir string) (BackupManifest, error) {
	var m BackupManifest
	from, dataDir = absDir(from), absDir(dataDir)
	b, err := os.ReadFile(filepath.Join(from, backupManifestName))
	if err != nil {
		return m, fmt.Errorf("restore: %s is not a complete backup: %w", from, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("restore: manifest: %w", err)
	}
	if err := requireEmptyDir(dataDir); err != nil {
		return m, err
	}
	if err := os.MkdirAll(dataDir, privateDirMode); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	// Copies, not links: the restored node must not share files with the
	// backup it came from.
	if m.Store {
		if _, _, err := copyTree(ctx, filepath.Join(from, backupStoreDir), filepath.Join(dataDir, backupStoreDir), false, nil); err != nil {
			return m, fmt.Errorf("restore: store: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(from, backupBlobsDir)); err == nil {
		if _, _, err := copyTree(ctx, filepath.Join(from, backupBlobsDir), filepath.Join(dataDir, backupBlobsDir), false, nil); err != nil {
			return m, fmt.Errorf("restore: blobs: %w", err)
		}
	}
	if m.JWTSecret {
		if _, err := copyOptionalFile(filepath.Join(from, jwtSecretName), filepath.Join(dataDir, jwtSecretName)); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
	}
	return m, syncDir(dataDir)
}

func requireEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", dir, err)
	case len(ents) > 0:
		return fmt.Errorf("%s is not empty: give a new directory", dir)
	}
	return nil
}

// copyTree copies the regular files under src into dst, hard-linking them
// when link is set and the file system allows it. A missing src is an empty
// tree. skip, given a path relative to src, leaves that entry out.
func copyTree(ctx context.Context, src, dst string, link bool, skip func(rel string) bool) (files, links int, err error) {
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// A blob deleted between listing and copying is not an error.
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if skip != nil && rel != "." && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, privateDirMode)
		case !d.Type().IsRegular():
			return nil
		}
		if link {
			if err := os.Link(path, target); err == nil {
				files++
				links++
				return nil
			} else if errors.Is(err, os.ErrNotExist) {
				return nil
			}
		}
		if err := copyFile(path, target); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		files++
		return nil
	})
	return files, links, err
}

func copyOptionalFile(src, dst string) (bool, error) {
	err := copyFile(src, dst)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, privateFileMode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, privateFileMode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type adminBackupReq struct {
	To      string `json:"to"`
	Version string `json:"version"`
}

// backupFunc takes a backup of the running node into to.
type backupFunc func(ctx context.Context, to, version string) (BackupManifest, error)

// routeBackup serves POST /backup: the running server checkpoints its own
// store, since only it may open the locked data dir.
func (a *adminServer) routeBackup(mux *http.ServeMux) {
	mux.HandleFunc("POST /backup", func(w http.ResponseWriter, r *http.Request) {
		if a.backup == nil {
			writeAdmin(w, http.StatusNotImplemented, adminError{"internal", "this server takes no backups"})
			return
		}
		var in adminBackupReq
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || !filepath.IsAbs(in.To) {
			writeAdmin(w, http.StatusBadRequest, adminError{"input", "want an absolute target directory"})
			return
		}
		m, err := a.backup(r.Context(), in.To, in.Version)
		if err != nil {
			a.log.Error("backup failed", "to", in.To, "error", err)
			writeAdmin(w, http.StatusInternalServerError, adminError{"internal", err.Error()})
			return
		}
		a.log.Info("backup written", "to", in.To, "blob_files", m.BlobFiles)
		writeAdmin(w, http.StatusOK, m)
	})
}

// Backup copies the data of the node configured by cfg into to: through the
// running server's admin socket when one answers, otherwise from the data
// dir opened (and locked) here. notice receives the line saying which.
func Backup(ctx context.Context, cfg config.Config, log *slog.Logger, to, version string, notice io.Writer) (BackupManifest, error) {
	to = absDir(to)
	dir := absDir(cfg.DataDir)
	sock := filepath.Join(dir, adminSocketName)
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}}
		defer client.CloseIdleConnections()
		var m BackupManifest
		err := socketOperator{client}.call(ctx, "/backup", adminBackupReq{To: to, Version: version}, &m)
		return m, err
	}
	if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
		return BackupManifest{}, fmt.Errorf("app: admin socket %s: %w", sock, err)
	}
	if _, err := os.Stat(dir); err != nil {
		return BackupManifest{}, fmt.Errorf("no running server at %s and no data dir there: %w", dir, err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return BackupManifest{}, err
	}
	if notice != nil {
		fmt.Fprintf(notice, "no running server at %s; backing up %s directly\n", dir, dir)
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return BackupManifest{}, errors.Join(err, lock.release())
	}
	m, err := takeBackup(ctx, cfg, st, to, version)
	return m, errors.Join(err, st.Close(), lock.release())
}
