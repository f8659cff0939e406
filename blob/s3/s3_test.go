package s3_test

import (
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/blob/blobtest"
	"github.com/mqchat/mqchat/blob/s3"
)

// fakeS3 serves the S3 protocol (gofakes3, in-memory) on loopback and
// creates bucket through minio-go, as an operator would beforehand.
func fakeS3(t *testing.T, bucket string) s3.Config {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s3.Config{
		Endpoint:  u.Host,
		Bucket:    bucket,
		Region:    "us-east-1",
		AccessKey: "test-access",
		SecretKey: "test-secret",
		PathStyle: true,
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	if bucket != "" {
		if err := c.MakeBucket(t.Context(), bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			t.Fatalf("MakeBucket: %v", err)
		}
	}
	return cfg
}

func newStore(t *testing.T) *s3.Store {
	t.Helper()
	s, err := s3.New(t.Context(), fakeS3(t, "chat-blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func TestIsPresigner(t *testing.T) {
	var s blob.Store = newStore(t)
	if _, ok := s.(blob.Presigner); !ok {
		t.Fatal("the S3 store must implement blob.Presigner")
	}
}

// Past one part (16 MiB) an upload of unknown size goes multipart.
func TestMultipartUnknownSize(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 17 MiB")
	}
	blobtest.PutLargeUnknownSize(t, newStore(t), "big/multipart", 17<<20+7)
}

func TestNewChecksBucket(t *testing.T) {
	cfg := fakeS3(t, "")
	cfg.Bucket = "missing"
	if _, err := s3.New(t.Context(), cfg); err == nil {
		t.Fatal("New succeeded on a missing bucket")
	}
}
