package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/store"
)

// Writer appends segments to chats' archives. Its Archive method is the
// retention purger's Archiver: messages are durable in the blob store when
// it returns nil, and only then may the purger delete them.
type Writer struct {
	blobs blob.Store
	// MaxSegment is how many messages a segment grows to: a pass whose
	// messages continue the last segment and fit beside it rewrites that
	// segment with them, so a purger handing over a few messages a minute
	// does not leave a segment per minute. 0 = SegmentSize.
	MaxSegment int
	// One archive pass at a time per chat: the manifest is read, extended
	// and replaced, which two passes at once would lose a segment to.
	// Within a node the purger is the only writer of a chat; across a
	// cluster only the chat's owner purges it. Striped, so that the locks
	// do not grow with the number of chats.
	locks [64]sync.Mutex
}

// NewWriter returns a Writer storing into bs.
func NewWriter(bs blob.Store) *Writer {
	return &Writer{blobs: bs}
}

func (w *Writer) lock(chat string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(chat))
	l := &w.locks[h.Sum32()%uint32(len(w.locks))]
	l.Lock()
	return l.Unlock
}

func (w *Writer) maxSegment() int {
	if w.MaxSegment > 0 {
		return w.MaxSegment
	}
	return SegmentSize
}

// Archive makes msgs (all of chat, any order, no duplicate seq) part of
// chat's archive: as a new segment, or merged into the last one when they
// continue it and the two fit in MaxSegment. Messages at or below the
// manifest's last seq are already archived and skipped, so a pass repeated
// after a crash between archiving and purging writes nothing twice.
func (w *Writer) Archive(ctx context.Context, chat string, msgs []store.Message) error {
	defer w.lock(chat)()
	man, err := LoadManifest(ctx, w.blobs, chat)
	if err != nil {
		return err
	}
	last := man.LastSeq()
	fresh := make([]store.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.Chat != chat {
			return fmt.Errorf("archive: chat %q: message of chat %q", chat, m.Chat)
		}
		if m.Seq > last {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	slices.SortFunc(fresh, func(a, b store.Message) int { return cmpSeq(a.Seq, b.Seq) })
	for i := 1; i < len(fresh); i++ {
		if fresh[i].Seq == fresh[i-1].Seq {
			return fmt.Errorf("archive: chat %q: seq %d given twice", chat, fresh[i].Seq)
		}
	}
	var superseded string
	if n := len(man.Segments); n > 0 {
		tail := man.Segments[n-1]
		if tail.ToSeq+1 == fresh[0].Seq && tail.Count+len(fresh) <= w.maxSegment() {
			old, err := NewReader(w.blobs).Segment(ctx, chat, tail)
			if err != nil {
				// A damaged tail is left as it is, for an operator to
				// see; the new messages still go somewhere sound.
				if !errors.Is(err, ErrCorrupt) {
					return err
				}
			} else {
				fresh = append(old, fresh...)
				man.Segments = man.Segments[:n-1]
				superseded = tail.Key
			}
		}
	}
	data, err := encodeSegment(fresh)
	if err != nil {
		return fmt.Errorf("archive: chat %q: %w", chat, err)
	}
	first, end := fresh[0], fresh[len(fresh)-1]
	sum := sha256.Sum256(data)
	seg := Segment{
		Key:     segmentKey(chat, first.Seq, end.Seq),
		FromSeq: first.Seq, ToSeq: end.Seq,
		FromTime: formatTime(first.SentAt), ToTime: formatTime(end.SentAt),
		Count: len(fresh), Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
	}
	// Segment first, manifest second: a manifest never names an object
	// that is not durable. A crash in between leaves an unlisted segment,
	// which the next pass overwrites (same key) or leaves unread.
	if err := w.blobs.Put(ctx, seg.Key, bytes.NewReader(data), seg.Bytes, "application/gzip"); err != nil {
		return fmt.Errorf("archive: segment %s: %w", seg.Key, err)
	}
	man.Segments = append(man.Segments, seg)
	if err := man.store(ctx, w.blobs); err != nil {
		return err
	}
	if superseded != "" {
		// No manifest lists it any more, so nothing reads it: a failed
		// delete leaves an unread object, not a wrong archive, and must
		// not fail a pass whose messages are durable.
		_ = w.blobs.Delete(ctx, superseded)
	}
	return nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func encodeSegment(msgs []store.Message) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, m := range msgs {
		line, err := encodeRecord(m)
		if err != nil {
			return nil, fmt.Errorf("seq %d: %w", m.Seq, err)
		}
		if _, err := zw.Write(line); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeRecord writes m as one JSON object and a newline. The body goes in
// byte for byte: encoding/json would compact and HTML-escape it, and a
// restore must give back exactly what the store held.
func encodeRecord(m store.Message) ([]byte, error) {
	r := toRecord(m)
	body := r.Body
	r.Body = nil
	rest, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return append(rest, '\n'), nil
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("body is not a JSON value")
	}
	line := make([]byte, 0, len(rest)+len(body)+10)
	line = append(line, `{"body":`...)
	line = append(line, body...)
	line = append(line, ',')
	line = append(line, rest[1:]...)
	return append(line, '\n'), nil
}
