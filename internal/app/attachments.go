package app

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/services/attachments"
	"github.com/mqchat/mqchat/store"
)

// attachmentsSetup is the upload service and its janitor's lifetime.
type attachmentsSetup struct {
	svc    *attachments.Service
	cancel context.CancelFunc
	done   chan struct{}
}

// buildAttachments opens the blob store and the upload service; the chat
// service is handed to it (SetChats) once built, since each needs the other.
func (a *App) buildAttachments(reg prometheus.Registerer) error {
	blobs, err := a.openBlobs()
	if err != nil {
		return err
	}
	c := a.cfg.Attachments
	a.attach = &attachmentsSetup{svc: attachments.New(a.store, blobs, nil, attachments.Options{
		MaxBytes:        int64(c.MaxBytes),
		DailyBytes:      int64(c.DailyBytes),
		UnreferencedTTL: c.UnreferencedTTL,
		Logger:          a.log.With("component", "attachments"),
		Metrics:         metrics.NewAttachments(reg),
	})}
	return nil
}

// janitorInterval sweeps a few times per lifetime: an expired upload
// outlives its ttl by at most a quarter of it (and ten minutes at most).
func janitorInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/4, 100*time.Millisecond), 10*time.Minute)
}

func (s *attachmentsSetup) start(ttl time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.svc.RunJanitor(ctx, janitorInterval(ttl))
	}()
}

// stop ends the janitor and waits for its pass, before the store closes.
func (s *attachmentsSetup) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
}

// purgedAttachments deletes the attachments of purged image and file
// messages (the retention purger's Releaser) when no other chat references
// them: one upload may be sent to several chats by its owner, and the
// others keep it.
type purgedAttachments struct {
	st  store.Attachments
	svc *attachments.Service
}

func (p purgedAttachments) Release(ctx context.Context, chatID string, msgs []store.Message) error {
	var errs []error
	for _, m := range msgs {
		if m.Type != "image" && m.Type != "file" {
			continue
		}
		var body struct {
			Attachment string `json:"attachment"`
		}
		if json.Unmarshal(m.Body, &body) != nil || body.Attachment == "" {
			continue
		}
		att, err := p.st.Attachment(ctx, body.Attachment)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(att.Chats) != 1 || att.Chats[0] != chatID {
			continue
		}
		if err := p.svc.Delete(ctx, att.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
