package backend_test

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/blob/backend"
	"github.com/mqchat/mqchat/internal/config"
)

func TestOpenFS(t *testing.T) {
	dir := t.TempDir()
	s, err := backend.Open(t.Context(), config.Default().Blob, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "attachments/x", strings.NewReader("hi"), 2, "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "data", "attachments", "x")); err != nil {
		t.Errorf("object not under data_dir/blobs: %v", err)
	}
	if _, ok := s.(blob.Presigner); ok {
		t.Error("the fs store claims to presign URLs")
	}
}

func TestOpenS3(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Blob
	cfg.Backend = "s3"
	cfg.S3 = config.S3Config{Endpoint: u.Host, Bucket: "chat", Region: "us-east-1", AccessKey: "ak", SecretKey: "sk", PathStyle: true}

	if _, err := backend.Open(t.Context(), cfg, t.TempDir()); err == nil {
		t.Fatal("Open succeeded before the bucket exists")
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4("ak", "sk", ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(t.Context(), "chat", minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	s, err := backend.Open(t.Context(), cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "a/b", strings.NewReader("via s3"), 6, "text/plain"); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(t.Context(), "a/b"); err != nil || info.Size != 6 {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	if _, ok := s.(blob.Presigner); !ok {
		t.Error("the s3 store does not presign URLs")
	}
}

func TestOpenUnknown(t *testing.T) {
	if _, err := backend.Open(t.Context(), config.BlobConfig{Backend: "gcs"}, t.TempDir()); err == nil {
		t.Fatal("Open accepted an unknown backend")
	}
}
