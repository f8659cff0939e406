// Package attachments stores uploaded files in the blob store, keeps their
// metadata, decides who may download them and deletes uploads no message
// ever referenced. Images get their dimensions and a JPEG thumbnail.
package attachments

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Defaults of Options.
const (
	DefaultMaxBytes        = 25 << 20
	DefaultDailyBytes      = 500 << 20
	DefaultUnreferencedTTL = 24 * time.Hour
	// PresignTTL is how long presigned upload and download URLs live.
	PresignTTL = 5 * time.Minute
)

// Errors the REST layer maps to answers.
var (
	ErrTooLarge = errors.New("attachments: file too large")
	ErrQuota    = errors.New("attachments: daily upload quota exceeded")
	ErrNotFound = errors.New("attachments: not found")
	// ErrNoPresign: the blob backend cannot hand out URLs (fs).
	ErrNoPresign = errors.New("attachments: the blob store cannot presign")
)

// Store is the metadata the service keeps (store.Attachments).
type Store interface {
	PutAttachment(ctx context.Context, a store.Attachment) error
	Attachment(ctx context.Context, id string) (store.Attachment, error)
	MarkAttachmentReferenced(ctx context.Context, id, chat string) error
	UnreferencedAttachments(ctx context.Context, before time.Time, limit int) ([]store.Attachment, error)
	DeleteAttachment(ctx context.Context, id string) error
	AddAttachmentUsage(ctx context.Context, uid, day string, n, limit int64) (int64, error)
}

// Chats answers whether a user may read a chat (chat.Service.CanRead).
type Chats interface {
	CanRead(ctx context.Context, uid, chat string) error
}

// Metrics counts uploads: result is stored, too_large, quota or error.
type Metrics interface {
	ObserveUpload(result string, bytes int64)
}

type nopMetrics struct{}

func (nopMetrics) ObserveUpload(string, int64) {}

// Options configures the service; zero values take the defaults.
type Options struct {
	MaxBytes        int64
	DailyBytes      int64
	UnreferencedTTL time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
	Metrics         Metrics
}

// Service implements uploads, downloads and the claim chat messages make.
type Service struct {
	st    Store
	blobs blob.Store
	chats Chats
	opts  Options
}

var _ chat.Attachments = (*Service)(nil)

// New returns the service; chats may be set later with SetChats when the
// chat service is built after it.
func New(st Store, blobs blob.Store, chats Chats, opts Options) *Service {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.DailyBytes <= 0 {
		opts.DailyBytes = DefaultDailyBytes
	}
	if opts.UnreferencedTTL <= 0 {
		opts.UnreferencedTTL = DefaultUnreferencedTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	return &Service{st: st, blobs: blobs, chats: chats, opts: opts}
}

// SetChats sets the access checker; the chat service needs this service
// as its Attachments and this one needs the chat service's CanRead.
func (s *Service) SetChats(c Chats) { s.chats = c }

// MaxBytes is the largest upload accepted.
func (s *Service) MaxBytes() int64 { return s.opts.MaxBytes }

// Key is the blob key of an attachment, or of its thumbnail.
func Key(id string, thumb bool) string {
	if thumb {
		return "attachments/" + id + ".thumb"
	}
	return "attachments/" + id
}

// pendingKey is where a presigned upload lands before its confirmation:
// under the uploader's id, so only they can confirm it.
func pendingKey(uid, id string) string { return "uploads/" + uid + "/" + id }

func (s *Service) day() string { return s.opts.Now().UTC().Format(time.DateOnly) }

// Upload stores r as a new attachment of uid.
func (s *Service) Upload(ctx context.Context, uid string, r io.Reader) (store.Attachment, error) {
	a, err := s.ingest(ctx, uid, ids.NewUserID(), r)
	s.observe(a, err)
	return a, err
}

func (s *Service) observe(a store.Attachment, err error) {
	switch {
	case err == nil:
		s.opts.Metrics.ObserveUpload("stored", a.Size)
	case errors.Is(err, ErrTooLarge):
		s.opts.Metrics.ObserveUpload("too_large", 0)
	case errors.Is(err, ErrQuota):
		s.opts.Metrics.ObserveUpload("quota", 0)
	default:
		s.opts.Metrics.ObserveUpload("error", 0)
	}
}

// ingest streams r into attachments/{id} through a size limit and a
// sha256, then describes it: nothing is stored when it fails.
func (s *Service) ingest(ctx context.Context, uid, id string, r io.Reader) (a store.Attachment, err error) {
	day := s.day()
	used, err := s.st.AddAttachmentUsage(ctx, uid, day, 0, s.opts.DailyBytes)
	if err != nil {
		return a, fmt.Errorf("attachments: usage: %w", err)
	}
	if used >= s.opts.DailyBytes {
		return a, ErrQuota
	}
	// Stop reading at whichever limit comes first, one byte past it to
	// tell "exactly the limit" from "more".
	limit, over := s.opts.MaxBytes, ErrTooLarge
	if left := s.opts.DailyBytes - used; left < limit {
		limit, over = left, ErrQuota
	}
	br := bufio.NewReaderSize(r, 512)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return a, fmt.Errorf("attachments: read upload: %w", err)
	}
	contentType := http.DetectContentType(head)
	sum := sha256.New()
	lr := &limitedReader{r: br, left: limit, over: over, h: sum}
	key := Key(id, false)
	if err := s.blobs.Put(ctx, key, lr, -1, contentType); err != nil {
		s.remove(key)
		if lr.err != nil {
			return a, lr.err
		}
		return a, fmt.Errorf("attachments: store upload: %w", err)
	}
	if lr.err != nil { // a backend that swallowed the reader's error
		s.remove(key)
		return a, lr.err
	}
	defer func() {
		if err != nil {
			s.remove(key)
			s.remove(Key(id, true))
		}
	}()
	if _, err := s.st.AddAttachmentUsage(ctx, uid, day, lr.n, s.opts.DailyBytes); err != nil {
		if errors.Is(err, store.ErrQuotaExceeded) {
			return a, ErrQuota // a concurrent upload took the rest of the day's bytes
		}
		return a, fmt.Errorf("attachments: usage: %w", err)
	}
	a = store.Attachment{
		ID: id, Owner: uid, Size: lr.n, SHA256: hex.EncodeToString(sum.Sum(nil)),
		ContentType: contentType, CreatedAt: s.opts.Now().Truncate(time.Millisecond),
	}
	if isImage(contentType) {
		if err := s.describeImage(ctx, &a); err != nil {
			return store.Attachment{}, err
		}
	}
	if err := s.st.PutAttachment(ctx, a); err != nil {
		return store.Attachment{}, fmt.Errorf("attachments: put %s: %w", id, err)
	}
	return a, nil
}

// remove deletes a blob on a failure path, with its own context: the
// request's may be what failed.
func (s *Service) remove(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.blobs.Delete(ctx, key); err != nil && !errors.Is(err, blob.ErrNotFound) {
		s.opts.Logger.Warn("attachments: delete blob", "key", key, "error", err)
	}
}

// limitedReader passes at most left bytes, hashing them; one more byte is
// the over error, which the blob store's Put then fails with.
type limitedReader struct {
	r    io.Reader
	left int64
	n    int64
	over error
	err  error
	h    hash.Hash
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		l.err = l.over
		return 0, l.err
	}
	l.left -= int64(n)
	l.n += int64(n)
	l.h.Write(p[:n])
	return n, err
}

// Claim implements chat.Attachments: uid may reference its own upload in
// chat unless it was left unreferenced past its lifetime (the janitor is
// about to delete it). The answer describes the upload for the message.
func (s *Service) Claim(ctx context.Context, uid, id, chatID string) (chat.AttachmentInfo, error) {
	a, err := s.st.Attachment(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return chat.AttachmentInfo{}, fmt.Errorf("attachment %s: %w", id, chat.ErrAttachmentRefused)
	}
	if err != nil {
		return chat.AttachmentInfo{}, fmt.Errorf("attachments: claim %s: %w", id, err)
	}
	if a.Owner != uid || (!a.Referenced() && s.expired(a)) {
		return chat.AttachmentInfo{}, fmt.Errorf("attachment %s: %w", id, chat.ErrAttachmentRefused)
	}
	if err := s.st.MarkAttachmentReferenced(ctx, id, chatID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return chat.AttachmentInfo{}, fmt.Errorf("attachment %s: %w", id, chat.ErrAttachmentRefused)
		}
		return chat.AttachmentInfo{}, fmt.Errorf("attachments: claim %s: %w", id, err)
	}
	return s.describe(ctx, a), nil
}

// describe is what a message referencing a carries. The thumbnail's bytes
// ride along when small; failing to read them only costs the client a
// request for /thumbnail, so it does not refuse the message.
func (s *Service) describe(ctx context.Context, a store.Attachment) chat.AttachmentInfo {
	info := chat.AttachmentInfo{Size: a.Size, ContentType: a.ContentType, SHA256: a.SHA256, Width: a.Width, Height: a.Height}
	if a.ThumbWidth == 0 {
		return info
	}
	info.Thumbnail = &chat.ThumbnailInfo{ID: a.ID + ".thumb", Width: a.ThumbWidth, Height: a.ThumbHeight}
	data, err := s.inlineThumbnail(ctx, a.ID)
	if err != nil {
		s.opts.Logger.Warn("attachments: thumbnail not inlined", "id", a.ID, "err", err)
		return info
	}
	info.Thumbnail.Data = data
	return info
}

// inlineThumbnail reads the thumbnail of id, nil when it is larger than
// chat.MaxInlineThumbnail.
func (s *Service) inlineThumbnail(ctx context.Context, id string) ([]byte, error) {
	rc, _, err := s.blobs.Get(ctx, Key(id, true))
	if err != nil {
		return nil, fmt.Errorf("thumbnail %s: %w", id, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, chat.MaxInlineThumbnail+1))
	if err != nil {
		return nil, fmt.Errorf("thumbnail %s: %w", id, err)
	}
	if len(data) > chat.MaxInlineThumbnail {
		return nil, nil
	}
	return data, nil
}

func (s *Service) expired(a store.Attachment) bool {
	return !a.CreatedAt.After(s.opts.Now().Add(-s.opts.UnreferencedTTL))
}

// Get returns the attachment if uid may read it: its uploader, or a
// member of a chat one of whose messages references it, checked on every
// request (a member who left loses access). Anything else is ErrNotFound,
// so ids cannot be probed.
func (s *Service) Get(ctx context.Context, uid, id string) (store.Attachment, error) {
	if !ids.ValidUserID(id) {
		return store.Attachment{}, ErrNotFound
	}
	a, err := s.st.Attachment(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Attachment{}, ErrNotFound
	}
	if err != nil {
		return store.Attachment{}, fmt.Errorf("attachments: get %s: %w", id, err)
	}
	if a.Owner == uid {
		return a, nil
	}
	for _, c := range a.Chats {
		err := s.chats.CanRead(ctx, uid, c)
		if err == nil {
			return a, nil
		}
		if code := chat.CodeOf(err); code != chat.CodeNotAuthorized && code != chat.CodeNotFound {
			return store.Attachment{}, fmt.Errorf("attachments: access to %s: %w", id, err)
		}
	}
	return store.Attachment{}, ErrNotFound
}

// Open opens the attachment's bytes (or its thumbnail's) from offset for
// a reader Get allowed.
func (s *Service) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, blob.Info, error) {
	rc, info, err := s.blobs.GetRange(ctx, key, offset, -1)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, info, ErrNotFound
	}
	return rc, info, err
}

// PresignGet returns a URL the reader can download key from.
func (s *Service) PresignGet(ctx context.Context, key string) (string, error) {
	p, ok := s.blobs.(blob.Presigner)
	if !ok {
		return "", ErrNoPresign
	}
	return p.PresignGet(ctx, key, PresignTTL)
}

// Presigned is a direct upload's destination.
type Presigned struct {
	ID        string
	URL       string
	ExpiresAt time.Time
}

// Presign hands uid a URL to upload a new attachment to directly; the
// upload becomes an attachment when Confirm has read it.
func (s *Service) Presign(ctx context.Context, uid string) (Presigned, error) {
	p, ok := s.blobs.(blob.Presigner)
	if !ok {
		return Presigned{}, ErrNoPresign
	}
	id := ids.NewUserID()
	url, err := p.PresignPut(ctx, pendingKey(uid, id), PresignTTL, "")
	if err != nil {
		return Presigned{}, fmt.Errorf("attachments: presign: %w", err)
	}
	return Presigned{ID: id, URL: url, ExpiresAt: s.opts.Now().Add(PresignTTL)}, nil
}

// Confirm turns uid's presigned upload id into an attachment: the server
// reads it (size, sha256, sniffed type, image) exactly as an upload through
// it, then drops the pending object.
func (s *Service) Confirm(ctx context.Context, uid, id string) (store.Attachment, error) {
	if !ids.ValidUserID(id) {
		return store.Attachment{}, ErrNotFound
	}
	key := pendingKey(uid, id)
	info, err := s.blobs.Stat(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return store.Attachment{}, ErrNotFound
	}
	if err != nil {
		return store.Attachment{}, fmt.Errorf("attachments: confirm %s: %w", id, err)
	}
	if info.Size > s.opts.MaxBytes {
		s.remove(key)
		s.observe(store.Attachment{}, ErrTooLarge)
		return store.Attachment{}, ErrTooLarge
	}
	rc, _, err := s.blobs.Get(ctx, key)
	if err != nil {
		return store.Attachment{}, fmt.Errorf("attachments: confirm %s: %w", id, err)
	}
	defer rc.Close()
	a, err := s.ingest(ctx, uid, id, rc)
	s.observe(a, err)
	if err == nil || errors.Is(err, ErrTooLarge) {
		s.remove(key)
	}
	return a, err
}
