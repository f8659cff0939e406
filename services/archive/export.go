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

// firstSeqer is implemented by stores that purge (retention): the lowest
// seq still stored.
type firstSeqer interface {
	FirstSeq(ctx context.Context, chat string) (uint64, error)
}

// SegmentSize is how many messages a segment holds at most by default: a
// history page below the live range reads one or two of them.
const SegmentSize = 1000

// ExportResult counts what an export wrote.
type ExportResult struct {
	Messages int    `json:"messages"` // archived by this export
	Segments int    `json:"segments"` // in the archive afterwards
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
	if fs, ok := src.(firstSeqer); ok {
		// Messages purged without an archive are gone: start at the first
		// one stored.
		first, err := fs.FirstSeq(ctx, chat)
		if err != nil {
			return res, fmt.Errorf("archive: export %q: %w", chat, err)
		}
		if first > 0 {
			res.LastSeq = max(res.LastSeq, first-1)
		}
	}
	size := w.maxSegment()
	for {
		// Before bounds the page too: After 0 alone would ask for the
		// newest page.
		q := store.HistoryQuery{After: res.LastSeq, Before: res.LastSeq + uint64(size) + 1, Limit: size}
		page, err := src.History(ctx, chat, q)
		if err != nil {
			return res, fmt.Errorf("archive: export %q: %w", chat, err)
		}
		n := 0
		for n < len(page) && page[n].SentAt.Before(until) {
			n++
		}
		if n == 0 {
			return res.count(ctx, w, chat)
		}
		if err := w.Archive(ctx, chat, page[:n]); err != nil {
			return res, err
		}
		res.Messages += n
		res.LastSeq = page[n-1].Seq
		if n < len(page) || len(page) < size {
			return res.count(ctx, w, chat)
		}
	}
}

func (res ExportResult) count(ctx context.Context, w *Writer, chat string) (ExportResult, error) {
	man, err := LoadManifest(ctx, w.blobs, chat)
	res.Segments = len(man.Segments)
	return res, err
}
