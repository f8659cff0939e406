package store

import (
	"context"
	"errors"
	"time"
)

// Attachment is the metadata of one uploaded file; its bytes live in the
// blob store under attachments/{ID} (and attachments/{ID}.thumb for an
// image's thumbnail). Times are kept to the millisecond.
type Attachment struct {
	ID          string
	Owner       string // the uploader's user id
	Size        int64
	SHA256      string // hex
	ContentType string // sniffed from the bytes, never the client's word
	// Width and Height are an image's dimensions, 0 for other files.
	Width, Height int
	// ThumbWidth and ThumbHeight are the thumbnail's, 0 when there is none.
	ThumbWidth, ThumbHeight int
	CreatedAt               time.Time
	// Chats are the chats whose messages reference the attachment, sorted;
	// empty until the first one does. Filled by Attachment, never written
	// by PutAttachment.
	Chats []string
}

// Referenced reports whether a message of some chat points at a.
func (a Attachment) Referenced() bool { return len(a.Chats) > 0 }

// Attachments is the attachment metadata aggregate, with the per-user daily
// upload counter its quota is checked against.
type Attachments interface {
	// PutAttachment stores a new attachment; ErrConflict when the id is taken.
	PutAttachment(ctx context.Context, a Attachment) error
	// Attachment returns the attachment with its chats, ErrNotFound when absent.
	Attachment(ctx context.Context, id string) (Attachment, error)
	// MarkAttachmentReferenced records that a message of chat references id.
	// Idempotent; ErrNotFound when the attachment does not exist.
	MarkAttachmentReferenced(ctx context.Context, id, chat string) error
	// UnreferencedAttachments returns up to limit attachments that no chat
	// references and that were created before before, oldest first.
	UnreferencedAttachments(ctx context.Context, before time.Time, limit int) ([]Attachment, error)
	// DeleteAttachment removes the record and its references; ErrNotFound
	// when absent.
	DeleteAttachment(ctx context.Context, id string) error
	// AddAttachmentUsage adds n bytes to uid's upload total of day (a UTC
	// date, "2006-01-02") when the total stays within limit, and returns
	// the total. Past the limit nothing is added and the error is
	// ErrQuotaExceeded (wrapped) with the unchanged total. n = 0 reads it.
	AddAttachmentUsage(ctx context.Context, uid, day string, n, limit int64) (int64, error)
}

// ErrQuotaExceeded is returned when a counted write would pass its limit.
var ErrQuotaExceeded = errors.New("store: quota exceeded")
