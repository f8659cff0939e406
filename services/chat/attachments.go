package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

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
	// Claim checks that id is uid's own live upload and records that a
	// message of chat references it (its members may then download it).
	Claim(ctx context.Context, uid, id, chat string) error
}

// attachmentBody is the body of an image or file message.
type attachmentBody struct {
	Attachment string  `json:"attachment"`
	Caption    *string `json:"caption,omitempty"`
}

// referencedAttachment returns the attachment m points at: the body of an
// image or file message, and that of an edit whose new body names one (an
// edit must not swap in someone else's upload). ok is false for messages
// that point at none.
func referencedAttachment(m *store.Message) (id string, ok bool, err error) {
	switch {
	case m.Change == nil && (m.Type == TypeImage || m.Type == TypeFile):
	case m.Change != nil && m.Change.Kind == store.ChangeEdit && bytes.Contains(m.Body, []byte(`"attachment"`)):
	default:
		return "", false, nil
	}
	var b attachmentBody
	dec := json.NewDecoder(bytes.NewReader(m.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Attachment == "" {
		if m.Change != nil {
			return "", false, nil // an edit of a text message that mentions the word
		}
		return "", false, Invalid("body", `an image or file message's body is {"attachment": id, "caption"?: string}`)
	}
	return b.Attachment, true, nil
}

// claimAttachment enforces the attachment rule before m is routed to its
// writer, so the writer (possibly on another node) stays unaware of it.
func (s *Service) claimAttachment(ctx context.Context, m *store.Message) error {
	if s.opts.Attachments == nil {
		return nil
	}
	id, ok, err := referencedAttachment(m)
	if err != nil || !ok {
		return err
	}
	if err := s.opts.Attachments.Claim(ctx, m.From, id, m.Chat); err != nil {
		if errors.Is(err, ErrAttachmentRefused) {
			return Invalid("body", "no such attachment: "+id)
		}
		return s.storeError(ctx, "claim attachment", err)
	}
	return nil
}
