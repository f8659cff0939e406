// Package s3test runs an S3-compatible server in the test process:
// gofakes3 (the S3 protocol over an in-memory backend) on loopback, for the
// lifetime of the test, with the bucket the test names created through
// minio-go as an operator would create it before pointing chatd at it.
package s3test

import (
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Server is where the test server listens and how to sign in to it.
type Server struct {
	Endpoint             string // host:port, plain http
	Region               string
	AccessKey, SecretKey string
}

// Start runs a server for the rest of t and creates bucket in it unless
// bucket is empty.
func Start(t testing.TB, bucket string) Server {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := Server{Endpoint: u.Host, Region: "us-east-1", AccessKey: "test-access", SecretKey: "test-secret"}
	if bucket == "" {
		return s
	}
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(t.Context(), bucket, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("s3test: make bucket %s: %v", bucket, err)
	}
	return s
}
