package archive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Target is the message store an import writes into.
type Target interface {
	AppendMessages(ctx context.Context, msgs []store.Message) error
	History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error)
}

// ImportResult counts what an import did.
type ImportResult struct {
	Segments int `json:"segments"`
	Imported int `json:"imported"`
	Skipped  int `json:"skipped"` // already stored with the same id
}

// Import restores every archived segment of chat into dst, oldest first,
// one AppendMessages per segment, so a change message always finds its
// target. It is idempotent: a message already stored (same seq, same id)
// is skipped, and a different message at an archived seq is an error that
// names it. It must not run while a server writes the chat: the chat's
// writer keeps its last seq in memory.
func Import(ctx context.Context, r *Reader, dst Target, chat string) (ImportResult, error) {
	var res ImportResult
	man, err := LoadManifest(ctx, r.blobs, chat)
	if err != nil {
		return res, err
	}
	for _, seg := range man.Segments {
		msgs, err := r.Segment(ctx, chat, seg)
		if err != nil {
			return res, err
		}
		n, err := importSegment(ctx, dst, chat, seg, msgs)
		if err != nil {
			return res, err
		}
		res.Segments++
		res.Imported += n
		res.Skipped += len(msgs) - n
	}
	return res, nil
}

// importSegment appends msgs, leaving out those already stored, and says
// how many it appended.
func importSegment(ctx context.Context, dst Target, chat string, seg Segment, msgs []store.Message) (int, error) {
	for i := range msgs {
		// The resolved state is recomputed by the store from the change
		// messages; AppendMessages never writes it.
		msgs[i].EditedAt, msgs[i].DeletedAt, msgs[i].Reactions = time.Time{}, time.Time{}, nil
	}
	err := dst.AppendMessages(ctx, msgs)
	if err == nil {
		return len(msgs), nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return 0, fmt.Errorf("archive: import %s: %w", seg.Key, err)
	}
	// Some are there already (an import run twice, or cut short). Before,
	// not After: After 0 would mean no lower bound.
	stored, err := dst.History(ctx, chat, store.HistoryQuery{Before: seg.ToSeq + 1, Limit: int(seg.ToSeq - seg.FromSeq + 1)})
	if err != nil {
		return 0, fmt.Errorf("archive: import %s: %w", seg.Key, err)
	}
	have := make(map[uint64]uint64, len(stored))
	for _, m := range stored {
		have[m.Seq] = m.ID
	}
	rest := msgs[:0:0]
	for _, m := range msgs {
		id, ok := have[m.Seq]
		switch {
		case !ok:
			rest = append(rest, m)
		case id != m.ID:
			return 0, fmt.Errorf("archive: import %s: chat %q seq %d holds another message (id %x, archived %x): %w",
				seg.Key, chat, m.Seq, id, m.ID, store.ErrConflict)
		}
	}
	if len(rest) == 0 {
		return 0, nil
	}
	if err := dst.AppendMessages(ctx, rest); err != nil {
		return 0, fmt.Errorf("archive: import %s: %w", seg.Key, err)
	}
	return len(rest), nil
}
