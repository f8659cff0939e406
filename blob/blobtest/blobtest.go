// Package blobtest is the conformance suite every blob.Store backend runs,
// so that callers can rely on one behaviour whatever the backend.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/blob"
)

// Run exercises a backend. newStore returns an empty store; each subtest
// gets its own.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"Missing", testMissing},
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"Range", testRange},
		{"LargeUnknownSize", testLargeUnknownSize},
		{"ShortBody", testShortBody},
		{"InvalidKeys", testInvalidKeys},
		{"List", testList},
		{"ListStops", testListStops},
		{"Delete", testDelete},
		{"Cancelled", testCancelled},
		{"Presign", testPresign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func put(t *testing.T, s blob.Store, key, body, contentType string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(body), int64(len(body)), contentType); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

// read fetches key whole and checks Get's Info against Stat's.
func read(t *testing.T, s blob.Store, key string) (string, blob.Info) {
	t.Helper()
	rc, info, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%s) read: %v", key, err)
	}
	return string(b), info
}

func testMissing(t *testing.T, s blob.Store) {
	ctx := t.Context()
	put(t, s, "dir/present", "x", "text/plain")
	for _, key := range []string{"absent", "dir/absent", "dir", "dir/present/below"} {
		if _, _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
		}
		if _, _, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("GetRange(%s) = %v, want ErrNotFound", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Delete(%s) = %v, want ErrNotFound", key, err)
		}
	}
}

func testRoundTrip(t *testing.T, s blob.Store) {
	before := time.Now().Add(-time.Minute)
	put(t, s, "attachments/a1", "hello, blob", "text/plain; charset=utf-8")
	put(t, s, "attachments/empty", "", "application/octet-stream")
	for _, want := range []blob.Info{
		{Key: "attachments/a1", Size: 11, ContentType: "text/plain; charset=utf-8"},
		{Key: "attachments/empty", Size: 0, ContentType: "application/octet-stream"},
	} {
		body, info := read(t, s, want.Key)
		if int64(len(body)) != want.Size {
			t.Errorf("Get(%s) read %d bytes, want %d", want.Key, len(body), want.Size)
		}
		stat, err := s.Stat(t.Context(), want.Key)
		if err != nil {
			t.Fatalf("Stat(%s): %v", want.Key, err)
		}
		for name, got := range map[string]blob.Info{"Get": info, "Stat": stat} {
			if got.Key != want.Key || got.Size != want.Size || got.ContentType != want.ContentType {
				t.Errorf("%s(%s) info = %+v, want %+v", name, want.Key, got, want)
			}
			if got.ModTime.Before(before) || got.ModTime.After(time.Now().Add(time.Minute)) {
				t.Errorf("%s(%s) ModTime = %v, want about now", name, want.Key, got.ModTime)
			}
		}
	}
	if body, _ := read(t, s, "attachments/a1"); body != "hello, blob" {
		t.Errorf("Get = %q", body)
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, "k", "first version, longer", "text/plain")
	put(t, s, "k", "second", "image/png")
	body, info := read(t, s, "k")
	if body != "second" || info.Size != 6 || info.ContentType != "image/png" {
		t.Errorf("after overwrite: %q %+v", body, info)
	}
}

func testRange(t *testing.T, s blob.Store) {
	const body = "0123456789abcdef"
	put(t, s, "r/obj", body, "text/plain")
	tests := []struct {
		offset, length int64
		want           string
		err            error
	}{
		{0, 5, "01234", nil},
		{3, -1, body[3:], nil},
		{10, 4, "abcd", nil},
		{14, 10, "ef", nil}, // clamped to the end
		{15, 1, "f", nil},
		{0, -1, body, nil},
		{4, 0, "", nil},
		{16, -1, "", nil}, // at the end: empty, not an error
		{17, -1, "", blob.ErrInvalidRange},
		{-1, 2, "", blob.ErrInvalidRange},
	}
	for _, tt := range tests {
		rc, info, err := s.GetRange(t.Context(), "r/obj", tt.offset, tt.length)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("GetRange(%d, %d) = %v, want %v", tt.offset, tt.length, err, tt.err)
			}
			if err == nil {
				rc.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("GetRange(%d, %d): %v", tt.offset, tt.length, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != tt.want {
			t.Errorf("GetRange(%d, %d) = %q, %v; want %q", tt.offset, tt.length, got, err, tt.want)
		}
		// Info describes the whole object, not the range.
		if info.Size != int64(len(body)) || info.ContentType != "text/plain" || info.Key != "r/obj" {
			t.Errorf("GetRange(%d, %d) info = %+v", tt.offset, tt.length, info)
		}
	}
}

// onlyReader hides every interface but io.Reader (no Seek, no Len), so the
// backend must stream a body of unknown size.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// LargeSize is the object testLargeUnknownSize streams: a few MiB.
const LargeSize = 3<<20 + 12345

func testLargeUnknownSize(t *testing.T, s blob.Store) {
	PutLargeUnknownSize(t, s, "big/one", LargeSize)
}

// PutLargeUnknownSize streams n random bytes with size -1 and checks they
// read back whole (by hash) and in a range at the end.
func PutLargeUnknownSize(t *testing.T, s blob.Store, key string, n int64) {
	t.Helper()
	src := io.LimitReader(rand.Reader, n)
	h := sha256.New()
	tail := &tailWriter{keep: 100}
	body := io.TeeReader(src, io.MultiWriter(h, tail))
	if err := s.Put(t.Context(), key, onlyReader{body}, -1, "application/octet-stream"); err != nil {
		t.Fatalf("Put(%d bytes, size -1): %v", n, err)
	}
	want := h.Sum(nil)
	rc, info, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	h2 := sha256.New()
	got, err := io.Copy(h2, rc)
	rc.Close()
	if err != nil || got != n || info.Size != n || !bytes.Equal(h2.Sum(nil), want) {
		t.Fatalf("read back %d bytes (info %d), err %v, hash match %v; want %d bytes", got, info.Size, err, bytes.Equal(h2.Sum(nil), want), n)
	}
	rc, _, err = s.GetRange(t.Context(), key, n-100, 100)
	if err != nil {
		t.Fatalf("GetRange(tail): %v", err)
	}
	defer rc.Close()
	end, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(end, tail.tail) {
		t.Fatalf("tail range: err %v, equal %v", err, bytes.Equal(end, tail.tail))
	}
}

// tailWriter keeps the last keep bytes written to it.
type tailWriter struct {
	tail []byte
	keep int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.tail = append(w.tail, p...)
	if extra := len(w.tail) - w.keep; extra > 0 {
		w.tail = slices.Clone(w.tail[extra:])
	}
	return len(p), nil
}

// A body shorter than its declared size must fail and store nothing.
func testShortBody(t *testing.T, s blob.Store) {
	err := s.Put(t.Context(), "short", strings.NewReader("abc"), 10, "text/plain")
	if err == nil {
		t.Fatal("Put with a body shorter than size succeeded")
	}
	if _, err := s.Stat(t.Context(), "short"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after failed Put = %v, want ErrNotFound", err)
	}
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	for _, key := range []string{"", "/abs", "a/../b", "..", ".", "a/./b", "a//b", "trailing/", "back\\slash", "nul\x00"} {
		if err := s.Put(t.Context(), key, strings.NewReader("x"), 1, "text/plain"); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
		if _, _, err := s.Get(t.Context(), key); err == nil || errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want an invalid key error", key, err)
		}
	}
	var n int
	if err := s.List(t.Context(), "", func(blob.Info) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("List after invalid puts: %d keys, %v", n, err)
	}
}

func list(t *testing.T, s blob.Store, prefix string) []blob.Info {
	t.Helper()
	var out []blob.Info
	if err := s.List(t.Context(), prefix, func(i blob.Info) error { out = append(out, i); return nil }); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func keys(infos []blob.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func testList(t *testing.T, s blob.Store) {
	// Inserted out of order; "-" sorts before "/", which sorts before
	// letters, so a directory-by-directory walk would get this wrong.
	for _, k := range []string{"p/ba", "q/x", "p/b/c", "p/a", "p/b-d", "archive/c1/manifest.json", "archive/c1/1-10.jsonl.gz"} {
		put(t, s, k, k, "text/plain")
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"archive/c1/1-10.jsonl.gz", "archive/c1/manifest.json", "p/a", "p/b-d", "p/b/c", "p/ba", "q/x"}},
		{"p/", []string{"p/a", "p/b-d", "p/b/c", "p/ba"}},
		{"p/b", []string{"p/b-d", "p/b/c", "p/ba"}},
		{"p/b/", []string{"p/b/c"}},
		{"archive/c1/", []string{"archive/c1/1-10.jsonl.gz", "archive/c1/manifest.json"}},
		{"p/a", []string{"p/a"}},
		{"p/z", nil},
		{"zzz", nil},
	}
	for _, tt := range tests {
		got := list(t, s, tt.prefix)
		if !slices.Equal(keys(got), tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.prefix, keys(got), tt.want)
		}
		for _, in := range got {
			if in.Size != int64(len(in.Key)) || in.ModTime.IsZero() {
				t.Errorf("List(%q) entry %+v: want size %d and a ModTime", tt.prefix, in, len(in.Key))
			}
		}
	}
}

func testListStops(t *testing.T, s blob.Store) {
	for _, k := range []string{"s/1", "s/2", "s/3"} {
		put(t, s, k, "x", "text/plain")
	}
	stop := errors.New("enough")
	var seen []string
	err := s.List(t.Context(), "s/", func(i blob.Info) error {
		seen = append(seen, i.Key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(seen, []string{"s/1", "s/2"}) {
		t.Errorf("List stopping at 2: err %v, seen %v", err, seen)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	put(t, s, "d/x/one", "1", "text/plain")
	put(t, s, "d/x/two", "2", "text/plain")
	if err := s.Delete(t.Context(), "d/x/one"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(t.Context(), "d/x/one"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(t.Context(), "d/x/one"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if got := keys(list(t, s, "d/")); !slices.Equal(got, []string{"d/x/two"}) {
		t.Errorf("List after Delete = %v", got)
	}
	if err := s.Delete(t.Context(), "d/x/two"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Errorf("List after deleting everything = %v", keys(got))
	}
	// The key is usable again, including as a prefix of a new key.
	put(t, s, "d/x/two/three", "3", "text/plain")
	if body, _ := read(t, s, "d/x/two/three"); body != "3" {
		t.Errorf("Get after re-Put = %q", body)
	}
}

func testCancelled(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "c", strings.NewReader("x"), 1, "text/plain"); err == nil {
		t.Error("Put with a cancelled context succeeded")
	}
	if _, err := s.Stat(t.Context(), "c"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after cancelled Put = %v, want ErrNotFound", err)
	}
	if err := s.List(ctx, "", func(blob.Info) error { return nil }); err == nil {
		t.Error("List with a cancelled context succeeded")
	}
}

// testPresign uses the URLs the way a client would: plain net/http, no
// credentials.
func testPresign(t *testing.T, s blob.Store) {
	p, ok := s.(blob.Presigner)
	if !ok {
		t.Skip("backend hands out no URLs")
	}
	ctx := t.Context()
	putURL, err := p.PresignPut(ctx, "attachments/up", 5*time.Minute, "image/png")
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	body := "\x89PNG\r\n\x1a\n uploaded directly"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, putURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "image/png")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT presigned: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT presigned: %s", resp.Status)
	}
	got, info := read(t, s, "attachments/up")
	if got != body || info.ContentType != "image/png" {
		t.Errorf("after presigned PUT: %q %+v", got, info)
	}

	getURL, err := p.PresignGet(ctx, "attachments/up", 5*time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, getURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET presigned: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != body {
		t.Errorf("GET presigned: %s %q %v", resp.Status, b, err)
	}
	if _, err := p.PresignGet(ctx, "../escape", time.Minute); err == nil {
		t.Error("PresignGet accepted an invalid key")
	}
}
