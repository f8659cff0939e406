package attachments_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/blob"
	blobfs "github.com/mqchat/mqchat/blob/fs"
	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/attachments"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

// clock is the services' time, moved by the tests instead of sleeping.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// sink is the chat service's Deliverer: it keeps what was delivered.
type sink struct {
	mu  sync.Mutex
	got []store.Message
}

func (s *sink) Deliver(_ []string, m store.Message) {
	s.mu.Lock()
	s.got = append(s.got, m)
	s.mu.Unlock()
}

type env struct {
	st    *pebblestore.Store
	blobs blob.Store
	svc   *attachments.Service
	chat  *chat.Service
	clk   *clock
}

func newEnv(t *testing.T, opts attachments.Options) *env {
	t.Helper()
	blobs, err := blobfs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, opts, blobs)
}

// newEnvOn is newEnv on the given blob store.
func newEnvOn(t *testing.T, opts attachments.Options, blobs blob.Store) *env {
	t.Helper()
	clk := &clock{}
	st, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.Now = clk.Now
	svc := attachments.New(st, blobs, nil, opts)
	gen, err := ids.NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	cs := chat.New(st, &sink{}, gen, chat.Options{Attachments: svc, Now: clk.Now})
	t.Cleanup(cs.Close)
	svc.SetChats(cs)
	for _, uid := range []string{alice, bob, carol} {
		if err := st.CreateUser(t.Context(), store.User{ID: uid, Username: uid, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return &env{st: st, blobs: blobs, svc: svc, chat: cs, clk: clk}
}

const (
	alice = "aaaaaaaaaaaaaaaaaaaa"
	bob   = "bbbbbbbbbbbbbbbbbbbb"
	carol = "cccccccccccccccccccc"
)

// pngWithText encodes a w×h gradient PNG and inserts a tEXt chunk holding
// text, the kind of metadata a thumbnail must not carry over.
func pngWithText(t *testing.T, w, h int, text string) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{R: uint8(x), G: uint8(y), B: 200, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	const ihdrEnd = 8 + 4 + 4 + 13 + 4 // signature, IHDR length, type, data, crc
	data := append([]byte("Comment\x00"), text...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return append(append(append([]byte(nil), b[:ihdrEnd]...), chunk...), b[ihdrEnd:]...)
}

func readBlob(t *testing.T, bs blob.Store, key string) []byte {
	t.Helper()
	rc, _, err := bs.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blobKeys(t *testing.T, bs blob.Store) []string {
	t.Helper()
	keys := []string{}
	if err := bs.List(t.Context(), "", func(i blob.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestUploadImage(t *testing.T) {
	e := newEnv(t, attachments.Options{})
	src := pngWithText(t, 800, 400, "secret-gps-location")
	a, err := e.svc.Upload(t.Context(), alice, bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if a.ContentType != "image/png" || a.Size != int64(len(src)) || a.Width != 800 || a.Height != 400 ||
		a.ThumbWidth != 320 || a.ThumbHeight != 160 || len(a.SHA256) != 64 || a.Owner != alice {
		t.Fatalf("Upload = %+v", a)
	}
	if got := readBlob(t, e.blobs, attachments.Key(a.ID, false)); !bytes.Equal(got, src) {
		t.Fatal("stored bytes differ from the upload")
	}
	thumb := readBlob(t, e.blobs, attachments.Key(a.ID, true))
	cfg, format, err := image.DecodeConfig(bytes.NewReader(thumb))
	if err != nil || format != "jpeg" || cfg.Width != 320 || cfg.Height != 160 {
		t.Fatalf("thumbnail: %v %s %dx%d", err, format, cfg.Width, cfg.Height)
	}
	if bytes.Contains(thumb, []byte("secret-gps-location")) {
		t.Fatal("the thumbnail kept the original's metadata")
	}
	got, err := e.st.Attachment(t.Context(), a.ID)
	if err != nil || got.SHA256 != a.SHA256 || got.ThumbWidth != 320 {
		t.Fatalf("stored record = %+v, %v", got, err)
	}
}

func TestUploadKinds(t *testing.T) {
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 100, 500)), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		body        []byte
		contentType string
		w, h        int
		tw, th      int
	}{
		{"small png is not scaled up", pngWithText(t, 40, 30, "x"), "image/png", 40, 30, 40, 30},
		{"tall jpeg", jpg.Bytes(), "image/jpeg", 100, 500, 64, 320},
		{"text", []byte("hello, world\n"), "text/plain; charset=utf-8", 0, 0, 0, 0},
		{"empty", nil, "text/plain; charset=utf-8", 0, 0, 0, 0},
		{"png header, broken body", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...), "image/png", 0, 0, 0, 0},
	}
	e := newEnv(t, attachments.Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := e.svc.Upload(t.Context(), alice, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if a.ContentType != tc.contentType || a.Width != tc.w || a.Height != tc.h || a.ThumbWidth != tc.tw || a.ThumbHeight != tc.th {
				t.Fatalf("Upload = %+v", a)
			}
			_, err = e.blobs.Stat(t.Context(), attachments.Key(a.ID, true))
			if hasThumb := tc.tw > 0; hasThumb != (err == nil) {
				t.Fatalf("thumbnail stored: %v, want %v", err == nil, hasThumb)
			}
		})
	}
}

func TestUploadLimits(t *testing.T) {
	e := newEnv(t, attachments.Options{MaxBytes: 1000, DailyBytes: 2500})
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader(strings.Repeat("x", 1001))); !errors.Is(err, attachments.ErrTooLarge) {
		t.Fatalf("an upload past max_bytes = %v, want ErrTooLarge", err)
	}
	if keys := blobKeys(t, e.blobs); len(keys) != 0 {
		t.Fatalf("a refused upload left %q", keys)
	}
	for i := range 2 {
		if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader(strings.Repeat("x", 1000))); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	// 500 bytes of the day are left: 501 pass max_bytes but not the quota.
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader(strings.Repeat("x", 501))); !errors.Is(err, attachments.ErrQuota) {
		t.Fatalf("an upload past the daily quota = %v, want ErrQuota", err)
	}
	if _, err := e.svc.Upload(t.Context(), bob, strings.NewReader(strings.Repeat("x", 501))); err != nil {
		t.Fatalf("another user's quota: %v", err)
	}
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader(strings.Repeat("x", 500))); err != nil {
		t.Fatalf("the rest of the day: %v", err)
	}
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader("x")); !errors.Is(err, attachments.ErrQuota) {
		t.Fatalf("an upload with the day used up = %v, want ErrQuota", err)
	}
	if keys := blobKeys(t, e.blobs); len(keys) != 4 {
		t.Fatalf("blobs = %q, want the 4 accepted uploads", keys)
	}
	e.clk.Advance(24 * time.Hour)
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader("x")); err != nil {
		t.Fatalf("the next day: %v", err)
	}
}

func send(e *env, t *testing.T, from, to, typ, body string) error {
	t.Helper()
	_, err := e.chat.Send(t.Context(), from, chat.Envelope{CMID: ids.NewUserID(), To: to, Type: typ, Body: []byte(body)})
	return err
}

func TestClaimAndAccess(t *testing.T) {
	e := newEnv(t, attachments.Options{UnreferencedTTL: time.Hour})
	a, err := e.svc.Upload(t.Context(), alice, bytes.NewReader(pngWithText(t, 10, 10, "x")))
	if err != nil {
		t.Fatal(err)
	}
	// Before any message, only the uploader reads it.
	for uid, ok := range map[string]bool{alice: true, bob: false, carol: false} {
		if _, err := e.svc.Get(t.Context(), uid, a.ID); ok != (err == nil) || !ok && !errors.Is(err, attachments.ErrNotFound) {
			t.Fatalf("Get by %s before sending = %v", uid, err)
		}
	}
	refused := []struct{ name, from, typ, body string }{
		{"someone else's upload", bob, "image", `{"attachment":"` + a.ID + `"}`},
		{"unknown id", alice, "file", `{"attachment":"zzzzzzzzzzzzzzzzzzzz"}`},
		{"no attachment", alice, "image", `{"caption":"hi"}`},
		{"unknown field", alice, "image", `{"attachment":"` + a.ID + `","url":"http://x"}`},
		{"not an object", alice, "file", `"` + a.ID + `"`},
	}
	for _, tc := range refused {
		to := "user:" + carol
		if err := send(e, t, tc.from, to, tc.typ, tc.body); chat.CodeOf(err) != chat.CodeInvalid {
			t.Fatalf("%s: send = %v, want invalid_payload", tc.name, err)
		}
	}
	if _, err := e.svc.Get(t.Context(), carol, a.ID); !errors.Is(err, attachments.ErrNotFound) {
		t.Fatalf("a refused send granted access: %v", err)
	}
	if err := send(e, t, alice, "user:"+bob, "image", `{"attachment":"`+a.ID+`","caption":"look"}`); err != nil {
		t.Fatal(err)
	}
	for uid, ok := range map[string]bool{alice: true, bob: true, carol: false} {
		if _, err := e.svc.Get(t.Context(), uid, a.ID); ok != (err == nil) {
			t.Fatalf("Get by %s after sending to bob = %v", uid, err)
		}
	}
	// Bob may not forward it, even to alice's chat, nor swap it into an edit.
	if err := send(e, t, bob, "user:"+carol, "image", `{"attachment":"`+a.ID+`"}`); chat.CodeOf(err) != chat.CodeInvalid {
		t.Fatalf("forward by a recipient = %v, want invalid_payload", err)
	}
	// An expired unreferenced upload cannot be claimed any more.
	b, err := e.svc.Upload(t.Context(), alice, strings.NewReader("late"))
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour + time.Second)
	if err := send(e, t, alice, "user:"+bob, "file", `{"attachment":"`+b.ID+`"}`); chat.CodeOf(err) != chat.CodeInvalid {
		t.Fatalf("claim of an expired upload = %v, want invalid_payload", err)
	}
	// A referenced one stays sendable by its owner to more chats.
	if err := send(e, t, alice, "user:"+carol, "image", `{"attachment":"`+a.ID+`"}`); err != nil {
		t.Fatalf("resend of a referenced upload: %v", err)
	}
	if _, err := e.svc.Get(t.Context(), carol, a.ID); err != nil {
		t.Fatalf("Get by carol after the resend: %v", err)
	}
}

func TestJanitor(t *testing.T) {
	e := newEnv(t, attachments.Options{UnreferencedTTL: time.Hour})
	kept, err := e.svc.Upload(t.Context(), alice, bytes.NewReader(pngWithText(t, 10, 10, "x")))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := e.svc.Upload(t.Context(), alice, bytes.NewReader(pngWithText(t, 10, 10, "y")))
	if err != nil {
		t.Fatal(err)
	}
	if err := send(e, t, alice, "user:"+bob, "image", `{"attachment":"`+kept.ID+`"}`); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.Sweep(t.Context()); err != nil || n != 0 {
		t.Fatalf("Sweep before the ttl = %d, %v; want 0", n, err)
	}
	e.clk.Advance(2 * time.Hour)
	if n, err := e.svc.Sweep(t.Context()); err != nil || n != 1 {
		t.Fatalf("Sweep after the ttl = %d, %v; want 1", n, err)
	}
	if _, err := e.st.Attachment(t.Context(), gone.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the unreferenced record survived: %v", err)
	}
	keys := blobKeys(t, e.blobs)
	want := []string{attachments.Key(kept.ID, false), attachments.Key(kept.ID, true)}
	if len(keys) != 2 || keys[0] != want[0] || keys[1] != want[1] {
		t.Fatalf("blobs after the sweep = %q, want %q", keys, want)
	}
}

func TestRunJanitorStops(t *testing.T) {
	e := newEnv(t, attachments.Options{UnreferencedTTL: time.Millisecond})
	if _, err := e.svc.Upload(t.Context(), alice, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.svc.RunJanitor(ctx, time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(blobKeys(t, e.blobs)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the janitor never deleted the expired upload")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for one
	}
	cancel()
	<-done
}
