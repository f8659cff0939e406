package attachments_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/blob/s3"
	"github.com/mqchat/mqchat/internal/s3test"
	"github.com/mqchat/mqchat/services/attachments"
)

// s3Store is the S3 backend on the S3 test server, its bucket made as an
// operator would.
func s3Store(t *testing.T) *s3.Store {
	t.Helper()
	srv := s3test.Start(t, "chat")
	st, err := s3.New(t.Context(), s3.Config{
		Endpoint: srv.Endpoint, Bucket: "chat", Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func httpDo(t *testing.T, method, u string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func TestPresignedUpload(t *testing.T) {
	e := newEnvOn(t, attachments.Options{MaxBytes: 100 << 10}, s3Store(t))
	src := pngWithText(t, 640, 320, "secret")
	p, err := e.svc.Presign(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := httpDo(t, http.MethodPut, p.URL, src); status != http.StatusOK {
		t.Fatalf("PUT to the presigned URL: %d %s", status, body)
	}
	if _, err := e.svc.Confirm(t.Context(), bob, p.ID); !errors.Is(err, attachments.ErrNotFound) {
		t.Fatalf("another user's confirm = %v, want ErrNotFound", err)
	}
	a, err := e.svc.Confirm(t.Context(), alice, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != p.ID || a.ContentType != "image/png" || a.Size != int64(len(src)) || a.Width != 640 || a.ThumbWidth != 320 || a.ThumbHeight != 160 {
		t.Fatalf("Confirm = %+v", a)
	}
	if _, err := e.svc.Confirm(t.Context(), alice, p.ID); !errors.Is(err, attachments.ErrNotFound) {
		t.Fatalf("a second confirm = %v, want ErrNotFound (the pending upload is gone)", err)
	}
	keys := blobKeys(t, e.blobs)
	if len(keys) != 2 || keys[0] != attachments.Key(a.ID, false) || keys[1] != attachments.Key(a.ID, true) {
		t.Fatalf("blobs = %q", keys)
	}
	u, err := e.svc.PresignGet(t.Context(), attachments.Key(a.ID, false))
	if err != nil {
		t.Fatal(err)
	}
	if status, body := httpDo(t, http.MethodGet, u, nil); status != http.StatusOK || !bytes.Equal(body, src) {
		t.Fatalf("GET the presigned URL: %d, %d bytes", status, len(body))
	}

	// Too large: refused and the pending object dropped.
	p2, err := e.svc.Presign(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := httpDo(t, http.MethodPut, p2.URL, bytes.Repeat([]byte("x"), 100<<10+1)); status != http.StatusOK {
		t.Fatalf("PUT: %d", status)
	}
	if _, err := e.svc.Confirm(t.Context(), alice, p2.ID); !errors.Is(err, attachments.ErrTooLarge) {
		t.Fatalf("confirm of an oversized upload = %v, want ErrTooLarge", err)
	}
	if keys := blobKeys(t, e.blobs); len(keys) != 2 {
		t.Fatalf("blobs after a refused confirm = %q", keys)
	}
}

func TestUploadThroughS3(t *testing.T) {
	e := newEnvOn(t, attachments.Options{MaxBytes: 1000}, s3Store(t))
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader(strings.Repeat("x", 1001))); !errors.Is(err, attachments.ErrTooLarge) {
		t.Fatalf("oversized upload = %v, want ErrTooLarge", err)
	}
	if keys := blobKeys(t, e.blobs); len(keys) != 0 {
		t.Fatalf("a refused upload left %q", keys)
	}
	a, err := e.svc.Upload(t.Context(), alice, strings.NewReader("hello"))
	if err != nil || a.Size != 5 {
		t.Fatalf("Upload = %+v, %v", a, err)
	}
}

func TestPresignNeedsS3(t *testing.T) {
	e := newEnv(t, attachments.Options{})
	if _, err := e.svc.Presign(t.Context(), alice); !errors.Is(err, attachments.ErrNoPresign) {
		t.Fatalf("Presign on fs = %v, want ErrNoPresign", err)
	}
	if _, err := e.svc.PresignGet(t.Context(), "attachments/x"); !errors.Is(err, attachments.ErrNoPresign) {
		t.Fatalf("PresignGet on fs = %v, want ErrNoPresign", err)
	}
}
