package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/blob/backend"
	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/store"
)

// ArchiveTools is what the archive commands work on: the configured
// message store and blob store, opened by this process.
type ArchiveTools struct {
	Store store.Store
	Blobs blob.Store
}

// OpenArchive opens the configured store and blob store for an archive
// command, which runs without a server on the data dir: it takes the data
// dir's lock when the data dir holds either (Pebble, or blob.backend fs),
// so a running server is reported instead of being written under. The
// returned function closes both and must be called.
func OpenArchive(cfg config.Config, log *slog.Logger) (ArchiveTools, func() error, error) {
	dir := absDir(cfg.DataDir)
	var lock *dirLock
	if needsDataDir(cfg) || cfg.Blob.Backend == "fs" {
		if _, err := os.Stat(dir); err != nil {
			return ArchiveTools{}, nil, fmt.Errorf("app: data dir %s: %w (give the server's --data_dir or --config)", dir, err)
		}
		l, err := lockDataDir(dir)
		if err != nil {
			return ArchiveTools{}, nil, err
		}
		lock = l
	}
	fail := func(err error) (ArchiveTools, func() error, error) {
		return ArchiveTools{}, nil, errors.Join(err, lock.release())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bs, err := backend.Open(ctx, cfg.Blob, dir)
	if err != nil {
		return fail(fmt.Errorf("app: blob store: %w", err))
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return fail(err)
	}
	return ArchiveTools{Store: st, Blobs: bs}, func() error { return errors.Join(st.Close(), lock.release()) }, nil
}

// openBlobs opens the blob store the node keeps attachments and archives
// in, once: both share it.
func (a *App) openBlobs() (blob.Store, error) {
	if a.blobs != nil {
		return a.blobs, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bs, err := backend.Open(ctx, a.cfg.Blob, absDir(a.cfg.DataDir))
	if err != nil {
		return nil, fmt.Errorf("app: open blob store: %w", err)
	}
	a.blobs = bs
	return bs, nil
}
