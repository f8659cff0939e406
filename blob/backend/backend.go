// Package backend opens the blob.Store the configuration names. It is the
// one place that knows every backend, so the blob package itself stays free
// of their dependencies.
package backend

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/blob/fs"
	"github.com/mqchat/mqchat/blob/s3"
	"github.com/mqchat/mqchat/internal/config"
)

// Open returns the store for cfg: fs under dataDir/blobs, or the S3 bucket
// (checked to exist, so a misconfiguration fails at start-up).
func Open(ctx context.Context, cfg config.BlobConfig, dataDir string) (blob.Store, error) {
	switch cfg.Backend {
	case "fs", "":
		return fs.Open(filepath.Join(dataDir, "blobs"))
	case "s3":
		return s3.New(ctx, s3.Config{
			Endpoint:  cfg.S3.Endpoint,
			Bucket:    cfg.S3.Bucket,
			Region:    cfg.S3.Region,
			AccessKey: cfg.S3.AccessKey,
			SecretKey: cfg.S3.SecretKey,
			UseTLS:    cfg.S3.UseTLS,
			PathStyle: cfg.S3.PathStyle,
		})
	}
	return nil, fmt.Errorf("blob: unknown backend %q (want fs or s3)", cfg.Backend)
}
