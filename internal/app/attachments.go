package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/blob/backend"
	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/services/attachments"
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blobs, err := backend.Open(ctx, a.cfg.Blob, a.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("app: blob store: %w", err)
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
