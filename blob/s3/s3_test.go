package s3_test

import (
	"testing"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/blob/blobtest"
	"github.com/mqchat/mqchat/blob/s3"
	"github.com/mqchat/mqchat/internal/s3test"
)

// fakeS3 is the S3 test server, with bucket made unless it is empty.
func fakeS3(t *testing.T, bucket string) s3.Config {
	t.Helper()
	srv := s3test.Start(t, bucket)
	return s3.Config{
		Endpoint: srv.Endpoint, Bucket: bucket, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true,
	}
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
