// Package s3 stores blobs in a bucket of any S3-compatible service through
// minio-go, and presigns URLs so clients can move bytes without chatd.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mqchat/mqchat/blob"
)

// partSize bounds the memory of an upload of unknown size: minio-go buffers
// one part at a time, and 10000 parts of 16 MiB allow objects of 160 GiB.
const partSize = 16 << 20

// Config locates the bucket. Endpoint is host[:port] without scheme.
type Config struct {
	Endpoint  string
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
	UseTLS    bool
	// PathStyle addresses the bucket as endpoint/bucket; otherwise as
	// bucket.endpoint (virtual-host style, what AWS expects).
	PathStyle bool
	// Transport replaces the default HTTP transport (tests, custom CAs).
	Transport http.RoundTripper
}

// Store is a blob.Store and blob.Presigner on one bucket.
type Store struct {
	c      *minio.Client
	bucket string
}

var (
	_ blob.Store     = (*Store)(nil)
	_ blob.Presigner = (*Store)(nil)
)

// New builds the client and checks that the bucket exists, so a wrong
// endpoint, bucket or key fails at start-up rather than at the first upload.
func New(ctx context.Context, cfg Config) (*Store, error) {
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		// Empty keys make minio-go send anonymous requests (public or
		// policy-open buckets); those cannot presign.
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.UseTLS,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("blob/s3: client for %s: %w", cfg.Endpoint, err)
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("blob/s3: checking bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("blob/s3: bucket %s does not exist at %s", cfg.Bucket, cfg.Endpoint)
	}
	return &Store{c: c, bucket: cfg.Bucket}, nil
}

// Client exposes the underlying client (bucket administration in tools).
func (s *Store) Client() *minio.Client { return s.c }

func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	// DisableContentSha256 sends bodies as UNSIGNED-PAYLOAD, which is what
	// minio-go does over TLS anyway; on plain http it would otherwise wrap
	// every part in aws-chunked signature framing, hashing each byte twice
	// for no integrity TLS does not already give, and which some
	// S3-compatible servers store verbatim in multipart parts.
	opts := minio.PutObjectOptions{ContentType: contentType, PartSize: partSize, DisableContentSha256: true}
	if size >= 0 {
		// minio-go sends exactly size bytes; a shorter body must fail
		// rather than store a truncated object.
		r = &exactReader{r: r, left: size}
	}
	if _, err := s.c.PutObject(ctx, s.bucket, key, r, size, opts); err != nil {
		return fmt.Errorf("blob/s3: put %s: %w", key, err)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	return s.GetRange(ctx, key, 0, -1)
}

// GetRange stats first: Info describes the whole object, and the range is
// clamped against its size, because S3 refuses a range starting at the end
// where the other backends answer an empty body.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, blob.Info, error) {
	st, err := s.stat(ctx, key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	n, err := blob.ClampRange(st.Size, offset, length)
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("blob/s3: get %s: %w", key, err)
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), st.Info, nil
	}
	var opts minio.GetObjectOptions
	if offset > 0 || n < st.Size {
		if err := opts.SetRange(offset, offset+n-1); err != nil {
			return nil, blob.Info{}, fmt.Errorf("blob/s3: get %s: %w", key, err)
		}
	}
	// Pin the version read to the one stat saw, so a concurrent overwrite
	// fails the read instead of mixing two objects' bytes with one Info.
	if st.etag != "" {
		if err := opts.SetMatchETag(st.etag); err != nil {
			return nil, blob.Info{}, fmt.Errorf("blob/s3: get %s: %w", key, err)
		}
	}
	obj, err := s.c.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, blob.Info{}, s.mapErr("get", key, err)
	}
	// GetObject is lazy; Stat sends the request so errors surface here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, blob.Info{}, s.mapErr("get", key, err)
	}
	return obj, st.Info, nil
}

type statInfo struct {
	blob.Info
	etag string
}

func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	in, err := s.stat(ctx, key)
	return in.Info, err
}

func (s *Store) stat(ctx context.Context, key string) (statInfo, error) {
	if err := blob.ValidKey(key); err != nil {
		return statInfo{}, err
	}
	oi, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return statInfo{}, s.mapErr("stat", key, err)
	}
	return statInfo{Info: info(oi), etag: oi.ETag}, nil
}

func info(oi minio.ObjectInfo) blob.Info {
	return blob.Info{Key: oi.Key, Size: oi.Size, ContentType: oi.ContentType, ModTime: oi.LastModified}
}

// Delete stats before removing because S3 deletes are idempotent and
// callers (janitors, retention) want to know when nothing was there.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.mapErr("delete", key, err)
	}
	return nil
}

// List relies on S3 listing keys in UTF-8 binary order. Listings carry no
// content type, so Info.ContentType is empty here; Stat has it.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine when fn bails out
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("blob/s3: list %q: %w", prefix, oi.Err)
		}
		if err := fn(info(oi)); err != nil {
			return err
		}
	}
	// A cancelled listing just closes the channel; report it.
	return ctx.Err()
}

func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := blob.ValidKey(key); err != nil {
		return "", err
	}
	u, err := s.c.PresignedGetObject(ctx, s.bucket, key, ttl, nil)
	if err != nil {
		return "", fmt.Errorf("blob/s3: presign get %s: %w", key, err)
	}
	return u.String(), nil
}

// PresignPut signs the Content-Type too, so the uploader cannot store the
// object under another type than the one it asked for.
func (s *Store) PresignPut(ctx context.Context, key string, ttl time.Duration, contentType string) (string, error) {
	if err := blob.ValidKey(key); err != nil {
		return "", err
	}
	var h http.Header
	if contentType != "" {
		h = http.Header{"Content-Type": {contentType}}
	}
	u, err := s.c.PresignHeader(ctx, http.MethodPut, s.bucket, key, ttl, nil, h)
	if err != nil {
		return "", fmt.Errorf("blob/s3: presign put %s: %w", key, err)
	}
	return u.String(), nil
}

func (s *Store) mapErr(op, key string, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket:
		return fmt.Errorf("blob/s3: %s %s: %w", op, key, blob.ErrNotFound)
	case resp.Code == "InvalidRange":
		return fmt.Errorf("blob/s3: %s %s: %w", op, key, blob.ErrInvalidRange)
	}
	return fmt.Errorf("blob/s3: %s %s: %w", op, key, err)
}

// exactReader fails with io.ErrUnexpectedEOF when the body ends before the
// declared size.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}
