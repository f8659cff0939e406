package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/blob"
	blobbackend "github.com/mqchat/mqchat/blob/backend"
	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/s3test"
)

type attachmentMeta struct {
	ID          string `json:"id"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Thumbnail   *struct {
		ID     string `json:"id"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
	} `json:"thumbnail"`
}

// testPNG is a w×h PNG carrying a tEXt chunk with marker, metadata a
// thumbnail must not keep.
func testPNG(t *testing.T, w, h int, marker string) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x), G: uint8(y), B: 90, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	const afterIHDR = 8 + 25
	data := append([]byte("Comment\x00"), marker...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(append(chunk, "tEXt"...), data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return append(append(append([]byte(nil), b[:afterIHDR]...), chunk...), b[afterIHDR:]...)
}

// uploadMultipart posts data as the multipart field "file", declaring
// partType as its type.
func uploadMultipart(t *testing.T, s *server, a account, data []byte, partType string) httpResult {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="holiday.txt"`)
	h.Set("Content-Type", partType)
	pw, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write(data)
	mw.Close()
	return rawHTTP(t, s, "POST", "/v1/attachments", map[string]string{
		"Authorization": "Bearer " + a.Token, "Content-Type": mw.FormDataContentType(),
	}, body.String())
}

func uploadRaw(t *testing.T, s *server, a account, data []byte, contentType string) httpResult {
	t.Helper()
	return rawHTTP(t, s, "POST", "/v1/attachments", map[string]string{
		"Authorization": "Bearer " + a.Token, "Content-Type": contentType,
	}, string(data))
}

func (r httpResult) attachment(t *testing.T) attachmentMeta {
	t.Helper()
	if r.status != http.StatusCreated {
		t.Fatalf("upload: status %d %s", r.status, r.body)
	}
	var m attachmentMeta
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("upload answer %q: %v", r.body, err)
	}
	return m
}

func attachmentEnvelope(to, cmid, typ, id string) []byte {
	raw, _ := json.Marshal(map[string]any{"to": "user:" + to, "cmid": cmid, "type": typ,
		"body": map[string]string{"attachment": id, "caption": "look"}})
	return raw
}

// storedBlobs counts the objects under attachments/ in the node's blob
// store, whichever backend holds it.
func storedBlobs(t *testing.T, s *server) int {
	t.Helper()
	return countBlobs(t, s.cfg, "attachments/")
}

// countBlobs counts the objects under prefix in the blob store cfg names.
// The fs store is read as a directory tree, since opening it would clear
// the temp files of a running node's uploads.
func countBlobs(t *testing.T, cfg config.Config, prefix string) int {
	t.Helper()
	if cfg.Blob.Backend == "s3" {
		bs, err := blobbackend.Open(t.Context(), cfg.Blob, cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := bs.List(t.Context(), prefix, func(blob.Info) error { n++; return nil }); err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		return n
	}
	n := 0
	root := filepath.Join(cfg.DataDir, "blobs", "data")
	// Keys are paths under root; walk the directory prefix ends in and
	// match the rest of it against each key.
	dir := prefix[:strings.LastIndex(prefix, "/")+1]
	err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(dir)), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(filepath.ToSlash(rel), prefix) {
			n++
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// blobBackends are the blob stores every attachment test runs on: the
// data dir's, and an S3-compatible server the test starts.
var blobBackends = []struct {
	name  string
	apply func(*testing.T, *config.Config)
}{
	{"fs", func(*testing.T, *config.Config) {}},
	{"s3", func(t *testing.T, c *config.Config) { c.Blob = fakeS3(t) }},
}

// onBlobBackends runs test once per blob backend, configured by the
// returned mutate for startServer.
func onBlobBackends(t *testing.T, test func(t *testing.T, backend func(*config.Config))) {
	for _, b := range blobBackends {
		t.Run(b.name, func(t *testing.T) {
			test(t, func(c *config.Config) { b.apply(t, c) })
		})
	}
}

// fakeS3 is the S3 test server with a bucket for chatd.
func fakeS3(t *testing.T) config.BlobConfig {
	t.Helper()
	srv := s3test.Start(t, "chat-blobs")
	return config.BlobConfig{Backend: "s3", S3: config.S3Config{
		Endpoint: srv.Endpoint, Bucket: "chat-blobs", Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true,
	}}
}

// s3Flags are bc as chatd serve flags.
func s3Flags(bc config.BlobConfig) []string {
	return []string{"--blob.backend=s3", "--blob.s3.endpoint=" + bc.S3.Endpoint, "--blob.s3.bucket=" + bc.S3.Bucket,
		"--blob.s3.region=" + bc.S3.Region, "--blob.s3.access_key=" + bc.S3.AccessKey,
		"--blob.s3.secret_key=" + bc.S3.SecretKey, "--blob.s3.use_tls=false", "--blob.s3.path_style=true"}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestAttachments: an image uploaded over REST is described from its bytes
// (never the client's type), sent in an image message over MQTT, and
// downloaded whole, by range and as a metadata-free thumbnail by the
// recipient; a stranger cannot read it and another user cannot send it;
// an oversized upload and one past the daily quota store nothing.
func TestAttachments(t *testing.T) { onBlobBackends(t, testAttachments) }

func testAttachments(t *testing.T, onBackend func(*config.Config)) {
	// Past the JSON body cap (limits.max_message_bytes), which uploads do not have.
	const maxBytes, daily = 200 << 10, 700 << 10
	s := startServer(t, func(c *config.Config) {
		onBackend(c)
		c.Attachments.MaxBytes, c.Attachments.DailyBytes = maxBytes, daily
	})
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	src := testPNG(t, 480, 240, "gps=48.8584,2.2945")

	meta := uploadMultipart(t, s, alice, src, "text/plain").attachment(t)
	if meta.ContentType != "image/png" || meta.Size != int64(len(src)) || meta.Width != 480 || meta.Height != 240 ||
		meta.Thumbnail == nil || meta.Thumbnail.Width != 320 || meta.Thumbnail.Height != 160 || len(meta.SHA256) != 64 {
		t.Fatalf("multipart upload = %+v", meta)
	}
	raw := uploadRaw(t, s, alice, src, "application/pdf").attachment(t)
	if raw.ContentType != "image/png" || raw.SHA256 != meta.SHA256 || raw.ID == meta.ID {
		t.Fatalf("raw upload = %+v, multipart %+v", raw, meta)
	}

	alicePhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	bobPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	if rc, err := alicePhone.publish(t, "users/"+alice.ID+"/send", attachmentEnvelope(bob.ID, "img1", "image", meta.ID)); err != nil || rc != 0 {
		t.Fatalf("send the image: reason 0x%02x, %v", rc, err)
	}
	got := bobPhone.box.next(t, "the image message", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	var body struct{ Attachment, Caption string }
	if err := json.Unmarshal(got.Body, &body); err != nil || got.Type != "image" || body.Attachment != meta.ID || body.Caption != "look" {
		t.Fatalf("bob got %+v (%v)", got, err)
	}

	path := "/v1/attachments/" + meta.ID
	whole := rawHTTP(t, s, "GET", path, bearer(bob.Token), "")
	if whole.status != http.StatusOK || sha256Hex(whole.body) != meta.SHA256 || !bytes.Equal(whole.body, src) || whole.header.Get("Content-Type") != "image/png" ||
		whole.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("bob's download: status %d, %d bytes, headers %v", whole.status, len(whole.body), whole.header)
	}
	part := rawHTTP(t, s, "GET", path, map[string]string{"Authorization": "Bearer " + bob.Token, "Range": "bytes=10-109"}, "")
	if want := fmt.Sprintf("bytes 10-109/%d", len(src)); part.status != http.StatusPartialContent ||
		!bytes.Equal(part.body, src[10:110]) || part.header.Get("Content-Range") != want {
		t.Fatalf("range download: status %d, %d bytes, Content-Range %q", part.status, len(part.body), part.header.Get("Content-Range"))
	}
	tail := rawHTTP(t, s, "GET", path, map[string]string{"Authorization": "Bearer " + bob.Token, "Range": "bytes=-7"}, "")
	if tail.status != http.StatusPartialContent || !bytes.Equal(tail.body, src[len(src)-7:]) {
		t.Fatalf("suffix range: status %d, %q", tail.status, tail.body)
	}
	thumb := rawHTTP(t, s, "GET", path+"/thumbnail", bearer(bob.Token), "")
	if thumb.status != http.StatusOK || thumb.header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail: status %d %v", thumb.status, thumb.header)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(thumb.body))
	if err != nil || format != "jpeg" || cfg.Width != 320 || cfg.Height != 160 {
		t.Fatalf("thumbnail decodes as %s %dx%d (%v)", format, cfg.Width, cfg.Height, err)
	}
	if bytes.Contains(thumb.body, []byte("48.8584")) || bytes.Contains(thumb.body, []byte("Exif")) {
		t.Fatal("the thumbnail carries the original's metadata")
	}
	thumbPart := rawHTTP(t, s, "GET", path+"/thumbnail", map[string]string{"Authorization": "Bearer " + bob.Token, "Range": "bytes=0-1"}, "")
	if thumbPart.status != http.StatusPartialContent || !bytes.Equal(thumbPart.body, []byte{0xff, 0xd8}) {
		t.Fatalf("thumbnail range: status %d %x", thumbPart.status, thumbPart.body)
	}

	// Carol is in no chat that references it.
	for _, p := range []string{path, path + "/thumbnail", "/v1/attachments/" + raw.ID} {
		rawHTTP(t, s, "GET", p, bearer(carol.Token), "").wantAPIError(t, http.StatusNotFound, "not_found")
	}
	// Bob received it but may not send it on, so carol still cannot read it.
	bobSender := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "laptop")
	if rc, _ := bobSender.publish(t, "users/"+bob.ID+"/send", attachmentEnvelope(carol.ID, "fwd1", "image", meta.ID)); rc == 0 {
		t.Fatal("bob sent alice's attachment")
	}
	if rc, _ := bobSender.publish(t, "users/"+bob.ID+"/send", attachmentEnvelope(carol.ID, "fwd2", "file", "zzzzzzzzzzzzzzzzzzzz")); rc == 0 {
		t.Fatal("a message referencing no upload was accepted")
	}
	rawHTTP(t, s, "GET", path, bearer(carol.Token), "").wantAPIError(t, http.StatusNotFound, "not_found")
	rawHTTP(t, s, "GET", path, nil, "").wantAPIError(t, http.StatusUnauthorized, "unauthenticated")

	// Too large: refused, nothing stored, nothing counted.
	before := storedBlobs(t, s)
	uploadRaw(t, s, alice, bytes.Repeat([]byte("x"), maxBytes+1), "application/octet-stream").
		wantAPIError(t, http.StatusRequestEntityTooLarge, "payload_too_large")
	uploadMultipart(t, s, alice, bytes.Repeat([]byte("y"), maxBytes+1), "text/plain").
		wantAPIError(t, http.StatusRequestEntityTooLarge, "payload_too_large")
	if after := storedBlobs(t, s); after != before {
		t.Fatalf("oversized uploads left blobs: %d before, %d after", before, after)
	}
	// The daily quota: what is left of it, then nothing.
	used := 2 * len(src)
	full := bytes.Repeat([]byte("z"), maxBytes)
	for used+maxBytes <= daily {
		uploadRaw(t, s, alice, full, "application/octet-stream").attachment(t)
		used += maxBytes
	}
	uploadRaw(t, s, alice, bytes.Repeat([]byte("q"), daily-used+1), "application/octet-stream").
		wantAPIError(t, http.StatusTooManyRequests, "quota_exceeded")
	last := uploadRaw(t, s, alice, bytes.Repeat([]byte("q"), daily-used), "text/plain").attachment(t)
	if last.ContentType != "text/plain; charset=utf-8" || last.Thumbnail != nil {
		t.Fatalf("a text upload = %+v", last)
	}
	uploadRaw(t, s, alice, []byte("1"), "text/plain").wantAPIError(t, http.StatusTooManyRequests, "quota_exceeded")
	// Another user has their own quota.
	uploadRaw(t, s, bob, []byte("hello"), "text/plain").attachment(t)

	m := scrape(t, s)
	stored := 3 + (daily-2*len(src))/maxBytes + 1 // the images, the fills, the rest, bob's
	for metric, want := range map[string]float64{
		`mqchat_attachments_total{result="stored"}`:    float64(stored),
		`mqchat_attachments_total{result="too_large"}`: 2,
		`mqchat_attachments_total{result="quota"}`:     2,
		`mqchat_attachments_uploaded_bytes_total`:      float64(daily + len("hello")),
	} {
		if m[metric] != want {
			t.Errorf("%s = %v, want %v", metric, m[metric], want)
		}
	}
}

// TestAttachmentJanitor: an upload no message references within
// attachments.unreferenced_ttl is deleted, bytes and record; a referenced
// one stays.
func TestAttachmentJanitor(t *testing.T) { onBlobBackends(t, testAttachmentJanitor) }

func testAttachmentJanitor(t *testing.T, onBackend func(*config.Config)) {
	s := startServer(t, func(c *config.Config) {
		onBackend(c)
		c.Attachments.UnreferencedTTL = 400 * time.Millisecond
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	kept := uploadRaw(t, s, alice, testPNG(t, 20, 20, "k"), "image/png").attachment(t)
	gone := uploadRaw(t, s, alice, []byte("never sent"), "text/plain").attachment(t)
	phone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	if rc, err := phone.publish(t, "users/"+alice.ID+"/send", attachmentEnvelope(bob.ID, "k1", "image", kept.ID)); err != nil || rc != 0 {
		t.Fatalf("send: reason 0x%02x, %v", rc, err)
	}
	// Watched through the blob store, not by downloading: a download racing
	// the sweep may be cut off mid-body, which says nothing about the janitor.
	eventually(t, "the janitor deleting the unreferenced upload", func() error {
		if n := storedBlobs(t, s); n != 2 { // kept and its thumbnail
			return fmt.Errorf("%d blobs stored, want 2", n)
		}
		return nil
	})
	if r := rawHTTP(t, s, "GET", "/v1/attachments/"+gone.ID, bearer(alice.Token), ""); r.status != http.StatusNotFound {
		t.Fatalf("the swept upload: status %d, want 404", r.status)
	}
	// The expired upload can no longer be sent.
	if rc, _ := phone.publish(t, "users/"+alice.ID+"/send", attachmentEnvelope(bob.ID, "g1", "file", gone.ID)); rc == 0 {
		t.Fatal("a deleted upload was sent")
	}
	for _, p := range []string{"", "/thumbnail"} {
		if r := rawHTTP(t, s, "GET", "/v1/attachments/"+kept.ID+p, bearer(bob.Token), ""); r.status != http.StatusOK {
			t.Fatalf("the referenced upload%s: status %d", p, r.status)
		}
	}
}

// TestAttachmentsGroup: an image sent to a group is downloaded, byte for
// byte (same sha256 as the upload answer), by every member; a non-member,
// a member once removed and a forged id all get 404.
func TestAttachmentsGroup(t *testing.T) { onBlobBackends(t, testAttachmentsGroup) }

func testAttachmentsGroup(t *testing.T, onBackend func(*config.Config)) {
	s := startServer(t, onBackend)
	alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "photos", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	src := testPNG(t, 64, 48, "group")
	meta := uploadRaw(t, s, alice, src, "image/png").attachment(t)
	if meta.SHA256 != sha256Hex(src) {
		t.Fatalf("upload sha256 %s, want %s", meta.SHA256, sha256Hex(src))
	}

	bobPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bobPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	alicePhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	env, _ := json.Marshal(map[string]any{"to": "group:" + g.GroupID, "cmid": "gimg", "type": "image",
		"body": map[string]string{"attachment": meta.ID}})
	if rc, err := alicePhone.publish(t, "users/"+alice.ID+"/send", env); err != nil || rc != 0 {
		t.Fatalf("send to the group: reason 0x%02x, %v", rc, err)
	}
	got := bobPhone.box.next(t, "the group image", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	var body struct{ Attachment string }
	if err := json.Unmarshal(got.Body, &body); err != nil || got.Type != "image" || body.Attachment != meta.ID {
		t.Fatalf("bob got %+v (%v)", got, err)
	}

	path := "/v1/attachments/" + meta.ID
	for _, a := range []account{alice, bob, carol} {
		r := rawHTTP(t, s, "GET", path, bearer(a.Token), "")
		if r.status != http.StatusOK || sha256Hex(r.body) != meta.SHA256 {
			t.Fatalf("%s's download: status %d, sha256 %s, want %s", a.Username, r.status, sha256Hex(r.body), meta.SHA256)
		}
	}
	rawHTTP(t, s, "GET", path, bearer(dave.Token), "").wantAPIError(t, http.StatusNotFound, "not_found")

	// Carol could read it as a member; once removed she cannot, at the
	// very next request.
	if st := s.call(t, "DELETE", "/v1/groups/"+g.GroupID+"/members/"+carol.ID, alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("remove carol: %d", st)
	}
	for _, p := range []string{path, path + "/thumbnail"} {
		rawHTTP(t, s, "GET", p, bearer(carol.Token), "").wantAPIError(t, http.StatusNotFound, "not_found")
	}
	if r := rawHTTP(t, s, "GET", path, bearer(bob.Token), ""); r.status != http.StatusOK {
		t.Fatalf("bob after carol's removal: %d", r.status)
	}

	// A forged id shaped like a real one, and one that is not an id at all.
	forged := uploadRaw(t, s, dave, []byte("shape donor"), "text/plain").attachment(t).ID
	forged = forged[:len(forged)-4] + "zzzz"
	for _, id := range []string{forged, "../../etc/passwd", meta.ID + ".thumb"} {
		r := rawHTTP(t, s, "GET", "/v1/attachments/"+url.PathEscape(id), bearer(alice.Token), "")
		if r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
			t.Fatalf("forged id %q: status %d %s", id, r.status, r.body)
		}
	}
	rawHTTP(t, s, "GET", "/v1/attachments/"+forged, bearer(alice.Token), "").wantAPIError(t, http.StatusNotFound, "not_found")
}

// TestAttachmentsProcessS3: the real binary, configured with flags for an
// S3 backend the test starts, stores an upload in the bucket and serves
// the same bytes back to the recipient.
func TestAttachmentsProcessS3(t *testing.T) {
	bc := fakeS3(t)
	p := startChatdWith(t, "chatd", t.TempDir(), procOpts{args: s3Flags(bc)})
	s := p.server()
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	src := testPNG(t, 40, 30, "process")
	meta := uploadRaw(t, s, alice, src, "image/png").attachment(t)
	cfg := config.Config{DataDir: p.dataDir, Blob: bc}
	if n := countBlobs(t, cfg, "attachments/"+meta.ID); n != 2 { // the image and its thumbnail
		t.Fatalf("objects in the bucket for %s: %d, want 2", meta.ID, n)
	}
	if _, err := os.Stat(filepath.Join(p.dataDir, "blobs", "data", "attachments")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the s3-backed node wrote attachments into its data dir: %v", err)
	}
	var sent struct{ Seq uint64 }
	if st := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, bob.ID)+"/messages", alice.Token,
		map[string]any{"type": "image", "body": map[string]string{"attachment": meta.ID}},
		map[string]string{"Idempotency-Key": "p1"}, &sent); st != http.StatusCreated {
		t.Fatalf("send: %d", st)
	}
	r := rawHTTP(t, s, "GET", "/v1/attachments/"+meta.ID, bearer(bob.Token), "")
	if r.status != http.StatusOK || sha256Hex(r.body) != meta.SHA256 || meta.SHA256 != sha256Hex(src) {
		t.Fatalf("bob's download: status %d, sha256 %s, want %s", r.status, sha256Hex(r.body), sha256Hex(src))
	}
	p.stop(t)
}
