package attachments_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/attachments"
	"github.com/mqchat/mqchat/services/chat"
)

// noisyPNG does not compress: its thumbnail is too large to inline.
func noisyPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{R: uint8(r.Uint32()), G: uint8(r.Uint32()), B: uint8(r.Uint32()), A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sendEnvelope(e *env, t *testing.T, from string, env chat.Envelope) (chat.AttachmentBody, error) {
	t.Helper()
	if env.CMID == "" {
		env.CMID = ids.NewUserID()
	}
	res, err := e.chat.Send(t.Context(), from, env)
	if err != nil {
		return chat.AttachmentBody{}, err
	}
	var b chat.AttachmentBody
	if err := json.Unmarshal(res.Message.Body, &b); err != nil {
		t.Fatalf("stored body %s: %v", res.Message.Body, err)
	}
	return b, nil
}

// TestMessageCarriesAttachment: the server writes the upload's metadata
// and an inline thumbnail into the message next to the client's fields.
func TestMessageCarriesAttachment(t *testing.T) {
	e := newEnv(t, attachments.Options{})
	ctx := t.Context()
	img, err := e.svc.Upload(ctx, alice, bytes.NewReader(pngWithText(t, 800, 600, "x")))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := e.svc.Upload(ctx, alice, strings.NewReader("plain words"))
	if err != nil {
		t.Fatal(err)
	}
	noisy, err := e.svc.Upload(ctx, alice, bytes.NewReader(noisyPNG(t, 640, 640)))
	if err != nil {
		t.Fatal(err)
	}

	got, err := sendEnvelope(e, t, alice, chat.Envelope{To: "user:" + bob, Type: chat.TypeImage, Body: []byte(`{"attachment":"` + img.ID + `","caption":"look"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Attachment != img.ID || got.Caption == nil || *got.Caption != "look" ||
		got.Size != img.Size || got.SHA256 != img.SHA256 || got.ContentType != "image/png" ||
		got.Width != 800 || got.Height != 600 {
		t.Fatalf("image body = %+v, upload %+v", got, img)
	}
	th := got.Thumbnail
	if th == nil || th.ID != img.ID+".thumb" || th.Width != 320 || th.Height != 240 || len(th.Data) == 0 || len(th.Data) > chat.MaxInlineThumbnail {
		t.Fatalf("thumbnail = %+v", th)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(th.Data))
	if err != nil || cfg.Width != th.Width || cfg.Height != th.Height {
		t.Fatalf("inline thumbnail decodes as %+v, %v; want a %dx%d JPEG", cfg, err, th.Width, th.Height)
	}

	got, err = sendEnvelope(e, t, alice, chat.Envelope{To: "user:" + bob, Type: chat.TypeFile, Body: []byte(`{"attachment":"` + doc.ID + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Caption != nil || got.Size != int64(len("plain words")) || !strings.HasPrefix(got.ContentType, "text/plain") ||
		got.Width != 0 || got.Thumbnail != nil || got.SHA256 != doc.SHA256 {
		t.Fatalf("file body = %+v", got)
	}

	got, err = sendEnvelope(e, t, alice, chat.Envelope{To: "user:" + bob, Type: chat.TypeImage, Body: []byte(`{"attachment":"` + noisy.ID + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if th := got.Thumbnail; th == nil || th.Width != 320 || th.Height != 320 || th.Data != nil {
		t.Fatalf("large thumbnail = %+v; want its id and size without data", th)
	}
}

// TestServerFieldsRefused: a client cannot supply what the server states,
// in a send or in an edit.
func TestServerFieldsRefused(t *testing.T) {
	e := newEnv(t, attachments.Options{})
	a, err := e.svc.Upload(t.Context(), alice, bytes.NewReader(pngWithText(t, 10, 10, "x")))
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.chat.Send(t.Context(), alice, chat.Envelope{CMID: ids.NewUserID(), To: "user:" + bob, Type: chat.TypeImage, Body: []byte(`{"attachment":"` + a.ID + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"size":1`, `"content_type":"text/html"`, `"sha256":"00"`, `"width":9000`, `"thumbnail":{"id":"x","width":1,"height":1}`} {
		body := []byte(`{"attachment":"` + a.ID + `",` + field + `}`)
		if _, err := sendEnvelope(e, t, alice, chat.Envelope{To: "user:" + bob, Type: chat.TypeImage, Body: body}); chat.CodeOf(err) != chat.CodeInvalid {
			t.Fatalf("send with %s = %v, want invalid_payload", field, err)
		}
		edit := chat.Envelope{To: "user:" + bob, Edit: &chat.TargetRef{Seq: first.Message.Seq}, Body: body}
		if _, err := sendEnvelope(e, t, alice, edit); chat.CodeOf(err) != chat.CodeInvalid {
			t.Fatalf("edit with %s = %v, want invalid_payload", field, err)
		}
	}
	// A valid edit (a new caption) gets the description again.
	got, err := sendEnvelope(e, t, alice, chat.Envelope{To: "user:" + bob, Edit: &chat.TargetRef{Seq: first.Message.Seq},
		Body: []byte(`{"attachment":"` + a.ID + `","caption":"new"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Caption == nil || *got.Caption != "new" || got.Size != a.Size || got.Thumbnail == nil || len(got.Thumbnail.Data) == 0 {
		t.Fatalf("edited body = %+v", got)
	}
}
