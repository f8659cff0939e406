package api

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/services/attachments"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Attachments is the upload service (services/attachments).
type Attachments interface {
	MaxBytes() int64
	Upload(ctx context.Context, uid string, r io.Reader) (store.Attachment, error)
	Get(ctx context.Context, uid, id string) (store.Attachment, error)
	Open(ctx context.Context, key string, offset int64) (io.ReadCloser, blob.Info, error)
	PresignGet(ctx context.Context, key string) (string, error)
	Presign(ctx context.Context, uid string) (attachments.Presigned, error)
	Confirm(ctx context.Context, uid, id string) (store.Attachment, error)
}

// multipartSlack is what a multipart upload may carry besides the file:
// boundaries and part headers.
const multipartSlack = 64 << 10

func (a *api) routeAttachments(r gin.IRoutes) {
	if a.opts.Attachments == nil {
		return
	}
	r.POST("/attachments", a.upload)
	r.POST("/attachments/presign", a.presignUpload)
	r.POST("/attachments/:id/confirm", a.confirmUpload)
	r.GET("/attachments/:id", func(c *gin.Context) { a.download(c, false) })
	r.GET("/attachments/:id/thumbnail", func(c *gin.Context) { a.download(c, true) })
}

// isUpload tells limitBody which requests carry a file instead of JSON.
func (a *api) isUpload(c *gin.Context) bool {
	return a.opts.Attachments != nil && c.Request.Method == http.MethodPost && c.FullPath() == "/v1/attachments"
}

type thumbnailView struct {
	ID     string `json:"id"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

type attachmentView struct {
	ID          string         `json:"id"`
	Size        int64          `json:"size"`
	SHA256      string         `json:"sha256"`
	ContentType string         `json:"content_type"`
	Width       int            `json:"width,omitempty"`
	Height      int            `json:"height,omitempty"`
	Thumbnail   *thumbnailView `json:"thumbnail,omitempty"`
}

func viewAttachment(at store.Attachment) attachmentView {
	v := attachmentView{ID: at.ID, Size: at.Size, SHA256: at.SHA256, ContentType: at.ContentType, Width: at.Width, Height: at.Height}
	if at.ThumbWidth > 0 {
		v.Thumbnail = &thumbnailView{ID: at.ID + ".thumb", Width: at.ThumbWidth, Height: at.ThumbHeight}
	}
	return v
}

// attachmentError is err in the API's vocabulary.
func attachmentError(err error) error {
	switch {
	case errors.Is(err, attachments.ErrTooLarge):
		return &chat.Error{Code: chat.CodeTooLarge, Message: "the file is larger than the upload limit"}
	case errors.Is(err, attachments.ErrQuota):
		return &chat.Error{Code: chat.CodeQuota, Message: "daily upload quota exceeded", RetryAfter: time.Hour}
	case errors.Is(err, attachments.ErrNotFound):
		return &chat.Error{Code: chat.CodeNotFound, Message: "no such attachment"}
	case errors.Is(err, attachments.ErrNoPresign):
		return &chat.Error{Code: chat.CodeNotFound, Message: "direct transfers need an S3 blob store"}
	}
	return err
}

// upload answers POST /v1/attachments: the multipart field "file", or the
// raw body. The bytes are streamed, never held whole, and the type the
// client claims is ignored.
func (a *api) upload(c *gin.Context) {
	max := a.opts.Attachments.MaxBytes()
	if c.Request.ContentLength > max+multipartSlack {
		fail(c, attachmentError(attachments.ErrTooLarge))
		return
	}
	var body io.Reader = c.Request.Body
	if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt == "multipart/form-data" {
		part, err := filePart(c.Request)
		if err != nil {
			fail(c, err)
			return
		}
		defer part.Close()
		body = part
	}
	at, err := a.opts.Attachments.Upload(c.Request.Context(), c.GetString(userKey), body)
	if err != nil {
		fail(c, attachmentError(err))
		return
	}
	c.JSON(http.StatusCreated, viewAttachment(at))
}

// filePart returns the multipart part named "file", skipping others.
func filePart(r *http.Request) (io.ReadCloser, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, chat.Invalid("file", "malformed multipart body")
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, chat.Invalid("file", `the multipart field "file" is required`)
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return nil, attachmentError(attachments.ErrTooLarge)
			}
			return nil, chat.Invalid("file", "malformed multipart body")
		}
		if part.FormName() == "file" {
			return part, nil
		}
		part.Close()
	}
}

// download answers GET /v1/attachments/{id}[/thumbnail], with ranges. The
// access check runs on every request: leaving the chat ends access.
func (a *api) download(c *gin.Context, thumb bool) {
	ctx := c.Request.Context()
	at, err := a.opts.Attachments.Get(ctx, c.GetString(userKey), c.Param("id"))
	if err == nil && thumb && at.ThumbWidth == 0 {
		err = attachments.ErrNotFound
	}
	if err != nil {
		fail(c, attachmentError(err))
		return
	}
	key := attachments.Key(at.ID, thumb)
	if c.Query("redirect") == "1" {
		url, err := a.opts.Attachments.PresignGet(ctx, key)
		if err == nil {
			c.Header("Cache-Control", "private, no-store")
			c.Redirect(http.StatusFound, url)
			return
		}
		if !errors.Is(err, attachments.ErrNoPresign) {
			fail(c, err)
			return
		}
		// Without presigning the bytes come from here, as without redirect.
	}
	contentType := at.ContentType
	if thumb {
		contentType = "image/jpeg"
	}
	h := c.Writer.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, max-age=300")
	// An upload is the uploader's bytes: a browser must never run it as a
	// page of the API's origin, whatever it sniffed as.
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	if !strings.HasPrefix(contentType, "image/") {
		h.Set("Content-Disposition", "attachment")
	}
	// The bytes are opened before any header is written: the record can
	// outlive its blob for a moment (the janitor or the retention purger
	// deleting it), and that must answer 404, not a 200 cut short. An open
	// read survives the deletion.
	rc, info, err := a.opts.Attachments.Open(ctx, key, 0)
	if err != nil {
		fail(c, attachmentError(err))
		return
	}
	rs := &blobSeeker{ctx: ctx, open: a.opts.Attachments.Open, key: key, size: info.Size, rc: rc}
	defer rs.Close()
	http.ServeContent(c.Writer, c.Request, "", at.CreatedAt, rs)
}

// blobSeeker is the io.ReadSeeker http.ServeContent wants, over ranged
// blob reads: a seek only moves the offset; a Read away from where the
// open read stands drops it and opens one at the new offset, so a range
// request fetches only from its start, and ServeContent's size probe
// (seek to the end and back) keeps the read opened before the headers.
type blobSeeker struct {
	ctx   context.Context
	open  func(ctx context.Context, key string, offset int64) (io.ReadCloser, blob.Info, error)
	key   string
	size  int64 // -1 until known
	off   int64
	rc    io.ReadCloser
	rcOff int64 // where rc stands
}

func (b *blobSeeker) Read(p []byte) (int, error) {
	if b.rc != nil && b.rcOff != b.off {
		b.Close()
	}
	if b.rc == nil {
		if b.size >= 0 && b.off >= b.size {
			return 0, io.EOF
		}
		rc, info, err := b.open(b.ctx, b.key, b.off)
		if err != nil {
			return 0, err
		}
		b.rc, b.rcOff, b.size = rc, b.off, info.Size
	}
	n, err := b.rc.Read(p)
	b.off += int64(n)
	b.rcOff = b.off
	return n, err
}

func (b *blobSeeker) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += b.off
	case io.SeekEnd:
		if b.size < 0 {
			rc, info, err := b.open(b.ctx, b.key, 0)
			if err != nil {
				return 0, err
			}
			rc.Close()
			b.size = info.Size
		}
		offset += b.size
	}
	if offset < 0 {
		return 0, errors.New("api: seek before the start")
	}
	b.off = offset
	return offset, nil
}

func (b *blobSeeker) Close() error {
	if b.rc == nil {
		return nil
	}
	err := b.rc.Close()
	b.rc = nil
	return err
}

type presignView struct {
	ID        string    `json:"id"`
	UploadURL string    `json:"upload_url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// presignUpload answers POST /v1/attachments/presign: a URL to PUT the
// file to directly (S3 only), then confirm.
func (a *api) presignUpload(c *gin.Context) {
	p, err := a.opts.Attachments.Presign(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		fail(c, attachmentError(err))
		return
	}
	c.JSON(http.StatusOK, presignView{ID: p.ID, UploadURL: p.URL, ExpiresAt: p.ExpiresAt.UTC()})
}

// confirmUpload answers POST /v1/attachments/{id}/confirm: the server
// reads the directly uploaded file and answers as an upload through it.
func (a *api) confirmUpload(c *gin.Context) {
	at, err := a.opts.Attachments.Confirm(c.Request.Context(), c.GetString(userKey), c.Param("id"))
	if err != nil {
		fail(c, attachmentError(err))
		return
	}
	c.JSON(http.StatusCreated, viewAttachment(at))
}
