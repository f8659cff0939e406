package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mqchat/mqchat/store"
)

// Message types whose body points at an uploaded attachment:
// {"attachment": id, "caption"?: string}.
const (
	TypeImage = "image"
	TypeFile  = "file"
)

// ErrAttachmentRefused is what an Attachments claim wraps when the
// attachment does not exist, is not the sender's, or has expired; the
// sender is told the attachment is unknown either way, so a claim never
// reveals someone else's upload.
var ErrAttachmentRefused = errors.New("chat: attachment refused")

// Attachments lets messages reference uploads (services/attachments).
type Attachments interface {
	// Claim checks that id is uid's own live upload, records that a
	// message of chat references it (its members may then download it)
	// and returns what the server knows of it.
	Claim(ctx context.Context, uid, id, chat string) (AttachmentInfo, error)
}

// AttachmentInfo is the server's description of an upload. The chat
// service writes it into the body of the message that references it, so
// every path that delivers the message (inbox, history, sync, the chat
// list's last_message, pushes) carries it without another read.
type AttachmentInfo struct {
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	// Width and Height are an image's; absent for other files.
	Width     int            `json:"width,omitempty"`
	Height    int            `json:"height,omitempty"`
	Thumbnail *ThumbnailInfo `json:"thumbnail,omitempty"`
}

// ThumbnailInfo is an image's JPEG thumbnail. ID is what
// GET /v1/attachments/{attachment}/thumbnail serves.
type ThumbnailInfo struct {
	ID     string `json:"id"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Data is the JPEG itself (base64 in JSON) when it is at most
	// MaxInlineThumbnail bytes, so a chat screen renders it at once.
	Data []byte `json:"data,omitempty"`
}

// MaxInlineThumbnail bounds the thumbnail bytes carried in a message body.
const MaxInlineThumbnail = 16 << 10

// AttachmentBody is the stored body of an image or file message: the
// client's fields (attachment, caption) and the server's description.
type AttachmentBody struct {
	Attachment string  `json:"attachment"`
	Caption    *string `json:"caption,omitempty"`
	AttachmentInfo
}

// clientAttachmentBody is all a client may send: the server's fields are
// refused (never trusted), so a body cannot claim another size, type,
// hash or thumbnail than the upload's.
type clientAttachmentBody struct {
	Attachment string  `json:"attachment"`
	Caption    *string `json:"caption,omitempty"`
}

const attachmentBodyRule = `an image or file message's body is {"attachment": id, "caption"?: string}; the server adds the attachment's size, type, hash, dimensions and thumbnail itself`

// referencedAttachment returns the body of m when it points at an
// attachment: that of an image or file message, and that of an edit whose
// new body is an object naming one (an edit must not swap in someone
// else's upload nor forge the server's fields). ok is false for messages
// that point at none.
func referencedAttachment(m *store.Message) (b clientAttachmentBody, ok bool, err error) {
	switch {
	case m.Change == nil && (m.Type == TypeImage || m.Type == TypeFile):
	case m.Change != nil && m.Change.Kind == store.ChangeEdit && namesAttachment(m.Body):
	default:
		return b, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(m.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Attachment == "" {
		return b, false, Invalid("body", attachmentBodyRule)
	}
	return b, true, nil
}

// namesAttachment reports whether body is a JSON object with an
// "attachment" key; a text edit that merely mentions the word is not.
func namesAttachment(body []byte) bool {
	if !bytes.Contains(body, []byte(`"attachment"`)) {
		return false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return false
	}
	_, ok := obj["attachment"]
	return ok
}

// claimAttachment enforces the attachment rule before m is routed to its
// writer, so the writer (possibly on another node) stays unaware of it,
// and writes the attachment's description into m's body.
func (s *Service) claimAttachment(ctx context.Context, m *store.Message) error {
	if s.opts.Attachments == nil {
		return nil
	}
	b, ok, err := referencedAttachment(m)
	if err != nil || !ok {
		return err
	}
	info, err := s.opts.Attachments.Claim(ctx, m.From, b.Attachment, m.Chat)
	if err != nil {
		if errors.Is(err, ErrAttachmentRefused) {
			return Invalid("body", "no such attachment: "+b.Attachment)
		}
		return s.storeError(ctx, "claim attachment", err)
	}
	body, err := json.Marshal(AttachmentBody{Attachment: b.Attachment, Caption: b.Caption, AttachmentInfo: info})
	if err != nil {
		return fmt.Errorf("chat: attachment body: %w", err)
	}
	m.Body = body
	return nil
}
