package app

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/store"
)

// TestBackupOfflineAndRestore: with no server running the CLI opens the data
// dir itself; the restored dir holds the store's records, the blob files
// (not the fs backend's staging files) and the JWT secret.
func TestBackupOfflineAndRestore(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(cfg.DataDir, privateDirMode); err != nil {
		t.Fatal(err)
	}
	secret, err := jwtSecret(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	u := store.User{ID: "u1", Username: "alice", PasswordHash: []byte("x"), CreatedAt: time.Now().UTC()}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(cfg.DataDir, "blobs")
	for path, body := range map[string]string{"data/attachments/a1": "blob", "tmp/partial": "cut short"} {
		p := filepath.Join(blobs, path)
		if err := os.MkdirAll(filepath.Dir(p), privateDirMode); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), privateFileMode); err != nil {
			t.Fatal(err)
		}
	}

	to := filepath.Join(t.TempDir(), "backup")
	var notice strings.Builder
	m, err := Backup(ctx, cfg, log, to, "test", &notice)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if !m.Store || m.BlobFiles != 1 || !m.JWTSecret || m.Version != "test" || !strings.Contains(notice.String(), "directly") {
		t.Fatalf("manifest %+v, notice %q", m, notice.String())
	}
	// The lock was released: the data dir can be locked again.
	lock, err := lockDataDir(absDir(cfg.DataDir))
	if err != nil {
		t.Fatalf("data dir still locked after Backup: %v", err)
	}
	if err := lock.release(); err != nil {
		t.Fatal(err)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, to, restored); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	rcfg := cfg
	rcfg.DataDir = restored
	got, err := jwtSecret(rcfg)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("restored secret %q (%v), want the original", got, err)
	}
	b, err := os.ReadFile(filepath.Join(restored, "blobs", "data", "attachments", "a1"))
	if err != nil || string(b) != "blob" {
		t.Fatalf("restored blob %q: %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(restored, "blobs", "tmp", "partial")); !os.IsNotExist(err) {
		t.Fatalf("staging file was backed up: %v", err)
	}
	rst, err := openStore(rcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	if ru, err := rst.UserByUsername(ctx, "alice"); err != nil || ru.ID != u.ID {
		t.Fatalf("restored user %+v: %v", ru, err)
	}
}

func TestBackupRestoreRefusals(t *testing.T) {
	ctx := context.Background()
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, privateFileMode); err != nil {
		t.Fatal(err)
	}
	incomplete := t.TempDir() // a backup cut short has no manifest
	if err := os.Mkdir(filepath.Join(incomplete, "store"), privateDirMode); err != nil {
		t.Fatal(err)
	}
	done := t.TempDir()
	if err := writeManifest(done, BackupManifest{Version: "test"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		run      func() error
		wantText string
	}{
		{"backup into a non-empty dir", func() error {
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			_, err := takeBackup(ctx, cfg, nil, full, "test")
			return err
		}, "not empty"},
		{"restore from a dir without a manifest", func() error {
			_, err := Restore(ctx, incomplete, filepath.Join(t.TempDir(), "new"))
			return err
		}, "not a complete backup"},
		{"restore over a non-empty data dir", func() error {
			_, err := Restore(ctx, done, full)
			return err
		}, "not empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantText)
			}
		})
	}
}
