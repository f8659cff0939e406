package attachments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/store"
)

const janitorBatch = 100

// grace keeps the janitor behind Claim's expiry: an upload claimed at the
// last moment is referenced before the janitor considers it.
func (s *Service) grace() time.Duration { return min(time.Minute, s.opts.UnreferencedTTL/10) }

// RunJanitor deletes expired unreferenced uploads every interval until
// ctx ends.
func (s *Service) RunJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("attachments: janitor", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep deletes the uploads no message referenced within their lifetime,
// bytes first so a failure leaves a record the next pass retries, and
// stale presigned uploads never confirmed. It returns how many
// attachments it deleted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	cutoff := s.opts.Now().Add(-s.opts.UnreferencedTTL - s.grace())
	deleted := 0
	for {
		batch, err := s.st.UnreferencedAttachments(ctx, cutoff, janitorBatch)
		if err != nil {
			return deleted, fmt.Errorf("attachments: sweep: %w", err)
		}
		for _, a := range batch {
			if err := s.delete(ctx, a.ID); err != nil {
				return deleted, err
			}
			deleted++
		}
		if len(batch) < janitorBatch {
			break
		}
	}
	return deleted, s.sweepPending(ctx, cutoff)
}

// Delete removes an attachment's bytes, thumbnail and record (retention
// uses it for attachments only purged messages referenced).
func (s *Service) Delete(ctx context.Context, id string) error { return s.delete(ctx, id) }

func (s *Service) delete(ctx context.Context, id string) error {
	for _, key := range []string{Key(id, true), Key(id, false)} {
		if err := s.blobs.Delete(ctx, key); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("attachments: delete %s: %w", key, err)
		}
	}
	if err := s.st.DeleteAttachment(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("attachments: delete %s: %w", id, err)
	}
	return nil
}

func (s *Service) sweepPending(ctx context.Context, cutoff time.Time) error {
	var stale []string
	err := s.blobs.List(ctx, "uploads/", func(info blob.Info) error {
		if info.ModTime.Before(cutoff) {
			stale = append(stale, info.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("attachments: sweep uploads: %w", err)
	}
	for _, key := range stale {
		if err := s.blobs.Delete(ctx, key); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("attachments: sweep %s: %w", key, err)
		}
	}
	return nil
}
