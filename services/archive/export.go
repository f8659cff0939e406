package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Source is the message store an export reads.
type Source interface {
	History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error)
}

// SegmentSize is how many messages an export puts in one segment: a
// history page below the live range reads one or two of them.
const SegmentSize = 1000

// ExportResult counts what an export wrote.
type ExportResult struct {
	Segments int    `json:"segments"`
	Messages int    `json:"messages"`
	LastSeq  uint64 `json:"last_seq"` // the archive's end afterwards
}

// Export archives chat's messages sent before until, from where the
// archive ends, without deleting them: a backup, or the archive a later
// purge finds already written. The export stops at the first message sent
// at or after until, so the archive stays a gap-free prefix of the chat.
func Export(ctx context.Context, src Source, w *Writer, chat string, until time.Time) (ExportResult, error) {
	man, err := LoadManifest(ctx, w.blobs, chat)
	if err != nil {
		return ExportResult{}, err
	}
	res := ExportResult{LastSeq: man.LastSeq()}
	for {
		page, err := src.History(ctx, chat, store.HistoryQuery{After: res.LastSeq, Limit: SegmentSize})
		if err != nil {
			return res, fmt.Errorf("archive: export %q: %w", chat, err)
		}
		n := 0
		for n < len(page) && page[n].SentAt.Before(until) {
			n++
		}
		if n == 0 {
			return res, nil
		}
		if err := w.Archive(ctx, chat, page[:n]); err != nil {
			return res, err
		}
		res.Segments++
		res.Messages += n
		res.LastSeq = page[n-1].Seq
		if n < len(page) || len(page) < SegmentSize {
			return res, nil
		}
	}
}
