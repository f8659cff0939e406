package chat

import (
	"context"

	"github.com/mqchat/mqchat/store"
)

// Archive serves the messages retention moved out of the store to the
// archive (services/archive.Reader), in ascending seq order.
type Archive interface {
	Before(ctx context.Context, chat string, before uint64, limit int) ([]store.Message, error)
	After(ctx context.Context, chat string, after uint64, limit int) ([]store.Message, error)
}

// withArchived completes a history page the store answered short because
// its older messages were purged: live is the store's page for q. Seqs are
// gap-free from 1, so a page that is short yet does not reach seq 1, or a
// forward page that skips seqs, is missing exactly what was archived; a
// page of a chat that was never purged never reads the archive.
func (s *Service) withArchived(ctx context.Context, chat string, q store.HistoryQuery, live []store.Message) ([]store.Message, error) {
	if s.opts.Archive == nil {
		return live, nil
	}
	if q.After == 0 {
		if len(live) >= q.Limit {
			return live, nil
		}
		below := q.Before // 0: no bound, the whole chat may be archived
		if len(live) > 0 {
			below = live[0].Seq
		}
		if below == 1 {
			return live, nil
		}
		old, err := s.opts.Archive.Before(ctx, chat, below, q.Limit-len(live))
		if err != nil {
			return nil, err
		}
		return append(old, live...), nil
	}
	if len(live) > 0 && live[0].Seq == q.After+1 {
		return live, nil
	}
	if len(live) == 0 {
		// Caught up (the usual sync) or wholly below the live range: only
		// the latter is worth a read of the archive.
		last, err := s.st.LastSeq(ctx, chat)
		if err != nil {
			return nil, err
		}
		if q.After >= last {
			return live, nil
		}
	}
	old, err := s.opts.Archive.After(ctx, chat, q.After, q.Limit)
	if err != nil {
		return nil, err
	}
	n := 0
	for n < len(old) && (len(live) == 0 || old[n].Seq < live[0].Seq) {
		n++
	}
	page := append(old[:n:n], live...)
	if len(page) > q.Limit {
		page = page[:q.Limit]
	}
	return page, nil
}
